// One EventSource per signed-in tab on `GET /api/v1/events`, opened with a stream token
// (`POST /api/v1/events/token`, decision 0018), shared by every screen that listens.
import { useEffect, useRef } from "react";
import { api } from "../api/client";
import { getToken, onTokenChange } from "./auth";
import type { Notification } from "./progress";

export const KINDS = [
  "campaign.progress",
  "campaign.status",
  "delivery.status",
  "message.received",
  "session.status",
  "stream.lagged",
] as const;

type Handler = (n: Notification) => void;
const handlers = new Set<Handler>();
let source: EventSource | null = null;
let opening = false;
let retry: ReturnType<typeof setTimeout> | undefined;

function dispatch(kind: string, raw: string): void {
  let n: Notification;
  try {
    n = kind === "stream.lagged" ? { id: "", kind, at: new Date().toISOString(), data: JSON.parse(raw) } : JSON.parse(raw);
  } catch {
    return;
  }
  handlers.forEach((h) => h(n));
}

async function open(): Promise<void> {
  if (source || opening || !getToken() || handlers.size === 0) return;
  opening = true;
  try {
    const { data } = await api.POST("/api/v1/events/token");
    if (!data) throw new Error("no stream token");
    const es = new EventSource(`/api/v1/events?access_token=${encodeURIComponent(data.token)}`);
    for (const kind of KINDS) es.addEventListener(kind, (e) => dispatch(kind, (e as MessageEvent).data));
    // opened or reopened: screens re-read their state, covering what happened between their
    // first fetch and this moment, or while the stream was down (nothing is replayed)
    es.addEventListener("open", () => dispatch("stream.lagged", '{"missed":0}'));
    es.onerror = () => {
      // EventSource retries by itself; once the token has expired the retry is refused and the
      // source closes: open a new one with a fresh token.
      if (es.readyState === EventSource.CLOSED) {
        source = null;
        retry = setTimeout(() => void open(), 1000);
      }
    };
    source = es;
  } catch {
    retry = setTimeout(() => void open(), 2000);
  } finally {
    opening = false;
  }
}

function close(): void {
  clearTimeout(retry);
  source?.close();
  source = null;
}

onTokenChange((token) => {
  close();
  if (token) void open();
});

/** Calls `handler` with every notification of the tenant while the component is mounted. */
export function useLive(handler: Handler): void {
  const ref = useRef(handler);
  ref.current = handler;
  useEffect(() => {
    const h: Handler = (n) => ref.current(n);
    handlers.add(h);
    void open();
    return () => {
      handlers.delete(h);
    };
  }, []);
}
