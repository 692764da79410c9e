package com.stacksync.commons.notifications;

import java.util.UUID;

/** commons' ShareProposalNotification as declared in its source (SUID and fields). */
public class ShareProposalNotification extends Notification {
	private static final long serialVersionUID = -3210149693220010223L;
	private UUID workspaceId;
	private String folderName;
	private Long itemId;
	private UUID ownerId;
	private String ownerName;
	private String swiftContainer;
	private String swiftURL;
	private boolean isEncrypted;

	public ShareProposalNotification(UUID workspaceId, String folderName, Long itemId, UUID ownerId, String ownerName,
			String swiftContainer, String swiftURL, boolean isEncrypted, String requestId) {
		super(requestId);
		this.workspaceId = workspaceId;
		this.folderName = folderName;
		this.itemId = itemId;
		this.ownerId = ownerId;
		this.ownerName = ownerName;
		this.swiftContainer = swiftContainer;
		this.swiftURL = swiftURL;
		this.isEncrypted = isEncrypted;
	}
}
