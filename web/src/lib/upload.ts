// Long requests with progress: the body's upload measured by XMLHttpRequest (fetch cannot report
// upload progress), then the time Herald takes to accept it (docs/dashboard.md, "Long work").
import { ApiFailure } from "../api/client";
import { getToken, setToken } from "./auth";

/** Where a long request stands: its body going up, then Herald working on it. */
export type Transfer =
  | { phase: "uploading"; loaded: number; total: number; since: number }
  | { phase: "accepting"; total: number; since: number };

export interface SendOptions {
  method?: "POST" | "PUT" | "PATCH";
  /** `application/json` when the body is an object (sent as JSON). */
  contentType?: string;
  onProgress?: (t: Transfer) => void;
}

function failureOf(status: number, text: string): ApiFailure {
  try {
    const e = JSON.parse(text)?.error;
    if (e && typeof e.message === "string") {
      const field = typeof e.details?.field === "string" ? e.details.field : undefined;
      return new ApiFailure(status, String(e.code ?? "http_error"), e.message, field);
    }
  } catch {
    // not the envelope: a proxy's page, say
  }
  return new ApiFailure(status, "http_error", `HTTP ${status}`, undefined);
}

/**
 * Sends `body` to `url` with the access token and resolves with the JSON answer; an error answer
 * rejects with an [`ApiFailure`] built from Herald's envelope (so it can be shown by its field).
 */
export function sendWithProgress<T>(url: string, body: Blob | string | object, options: SendOptions = {}): Promise<T> {
  const { method = "POST", onProgress } = options;
  const isObject = typeof body === "object" && !(body instanceof Blob);
  const payload: Blob | string = isObject ? JSON.stringify(body) : (body as Blob | string);
  const contentType = options.contentType ?? (isObject ? "application/json" : "application/octet-stream");
  const total = typeof payload === "string" ? new Blob([payload]).size : payload.size;
  return new Promise<T>((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    xhr.setRequestHeader("Content-Type", contentType);
    const token = getToken();
    if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    const started = Date.now();
    let accepting = false;
    const toAccepting = () => {
      if (accepting) return;
      accepting = true;
      onProgress?.({ phase: "accepting", total, since: Date.now() });
    };
    // listeners on xhr.upload must be set before send(), or the browser may not report progress
    xhr.upload.addEventListener("progress", (e) => {
      if (accepting) return;
      const size = e.lengthComputable ? e.total : total;
      if (e.loaded >= size) toAccepting();
      else onProgress?.({ phase: "uploading", loaded: e.loaded, total: size, since: started });
    });
    xhr.upload.addEventListener("load", toAccepting);
    xhr.addEventListener("load", () => {
      if (xhr.status === 401 && !url.includes("/auth/")) setToken(null);
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve((xhr.responseText ? JSON.parse(xhr.responseText) : null) as T);
        } catch {
          reject(new ApiFailure(xhr.status, "bad_answer", "the answer is not JSON", undefined));
        }
      } else {
        reject(failureOf(xhr.status, xhr.responseText));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiFailure(0, "network_error", "the request did not reach Herald", undefined)));
    xhr.addEventListener("abort", () => reject(new ApiFailure(0, "aborted", "the request was stopped", undefined)));
    onProgress?.({ phase: "uploading", loaded: 0, total, since: started });
    xhr.send(payload);
  });
}
