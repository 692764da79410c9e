import java.io.FileOutputStream;
import java.io.ObjectOutputStream;
import java.util.UUID;

import com.stacksync.commons.notifications.ShareProposalNotification;
import omq.common.message.Request;

/** Writes the notifyShareProposal event body as ObjectMQ's MultiProxymq would publish it. */
public class WriteShareProposal {
	public static void main(String[] args) throws Exception {
		UUID ws = UUID.fromString("5e7a1c00-0000-4000-8000-00000000e051");
		UUID owner = UUID.fromString("5e7a1c00-0000-4000-8000-00000000a001");
		ShareProposalNotification n = new ShareProposalNotification(ws, "photos", Long.valueOf(108113L), owner, "Wire",
				"5e7a1c00-0000-4000-8000-00000000e051", "http://swift.example/v1/AUTH_x", false,
				"b1523c26-94f1-4007-b608-748f70d36e41");
		Request r = new Request("0b9d2f7e-4c1a-4f7e-9a35-2d6c1e8f0a51", "notifyShareProposal", true, new Object[] { n });
		try (ObjectOutputStream out = new ObjectOutputStream(new FileOutputStream(args[0]))) {
			out.writeObject(r);
		}
	}
}
