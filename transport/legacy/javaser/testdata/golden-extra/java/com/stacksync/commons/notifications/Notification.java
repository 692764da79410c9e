package com.stacksync.commons.notifications;

import java.io.Serializable;

/** commons' Notification as serialized (SUID and field from the golden vectors). */
public class Notification implements Serializable {
	private static final long serialVersionUID = 5850418366116658341L;
	private String requestId;

	public Notification(String requestId) {
		this.requestId = requestId;
	}
}
