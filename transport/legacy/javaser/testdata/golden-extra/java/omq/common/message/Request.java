package omq.common.message;

import java.io.Serializable;

/** The serialized shape of ObjectMQ 0.5.x's Request (SUID and fields from the golden vectors). */
public class Request implements Serializable {
	private static final long serialVersionUID = 6366255840200365083L;
	private String id;
	private String method;
	private boolean async;
	private Object[] params;

	public Request(String id, String method, boolean async, Object[] params) {
		this.id = id;
		this.method = method;
		this.async = async;
		this.params = params;
	}
}
