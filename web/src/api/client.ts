// The typed client: paths and bodies come from schema.d.ts, generated from Herald's own OpenAPI
// document (web/openapi.json; `bash scripts/web-api.sh` regenerates both).
import createClient, { type Middleware } from "openapi-fetch";
import type { paths } from "./schema";
import { getToken, setToken } from "../lib/auth";

export type { paths, components } from "./schema";

const auth: Middleware = {
  onRequest({ request }) {
    const token = getToken();
    if (token && !request.headers.has("Authorization")) {
      request.headers.set("Authorization", `Bearer ${token}`);
    }
    return request;
  },
  onResponse({ response, request }) {
    // an expired or revoked token: back to the sign-in screen
    if (response.status === 401 && !request.url.includes("/auth/")) setToken(null);
    return response;
  },
};

// an absolute base (this page's origin): the same requests, and a Request outside a browser (tests) can be built
export const api = createClient<paths>({ baseUrl: globalThis.location?.origin ?? "" });
api.use(auth);

/** Herald's error envelope (`{"error": {"code", "message", "details"?}}`). */
export interface ApiErrorBody {
  error: { code: string; message: string; details?: { field?: string } & Record<string, unknown> };
}

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field: string | undefined,
  ) {
    super(message);
  }
}

function isEnvelope(value: unknown): value is ApiErrorBody {
  return typeof value === "object" && value !== null && "error" in value;
}

/** The data of an openapi-fetch answer, or an [`ApiFailure`] built from its envelope. */
export function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.error !== undefined || !result.response.ok) {
    const e = result.error;
    if (isEnvelope(e)) {
      const field = typeof e.error.details?.field === "string" ? e.error.details.field : undefined;
      throw new ApiFailure(result.response.status, e.error.code, e.error.message, field);
    }
    throw new ApiFailure(result.response.status, "http_error", `HTTP ${result.response.status}`, undefined);
  }
  return result.data as T;
}

/** The message to show next to `field`, when the failure names it (or one of `aliases`). */
export function fieldError(failure: unknown, field: string, ...aliases: string[]): string | undefined {
  if (!(failure instanceof ApiFailure) || !failure.field) return undefined;
  const names = [field, ...aliases];
  return names.some((n) => failure.field === n || failure.field!.startsWith(`${n}[`) || failure.field!.startsWith(`${n}.`))
    ? failure.message
    : undefined;
}

/** A failure no field names: shown above the form. */
export function formError(failure: unknown, fields: string[]): string | undefined {
  if (!failure) return undefined;
  if (failure instanceof ApiFailure) {
    if (failure.field && fields.some((f) => fieldError(failure, f))) return undefined;
    return failure.message;
  }
  return failure instanceof Error ? failure.message : String(failure);
}
