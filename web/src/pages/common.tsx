import { Alert, Badge, Group, Progress, Text } from "@mantine/core";
import { percent, type Progress as P } from "../lib/progress";
import { ApiFailure } from "../api/client";
import { useT } from "../lib/i18n";
import { STATUS_WORDS } from "../lib/messages";

const COLORS: Record<string, string> = {
  running: "blue",
  scheduled: "grape",
  paused: "yellow",
  completed: "teal",
  cancelled: "gray",
  failed: "red",
  connected: "teal",
  qr_pending: "yellow",
  disconnected: "gray",
  logged_out: "red",
  active: "teal",
  inactive: "gray",
  archived: "dark",
  queued: "gray",
  sending: "blue",
  sent: "cyan",
  delivered: "teal",
  read: "green",
  skipped: "dark",
};

/** A status value of the API in the reader's language (unknown values as they are). */
export function useStatusWord(): (status: string) => string {
  const { lang } = useT();
  return (status) => STATUS_WORDS[lang][status] ?? status.replaceAll("_", " ");
}

export function StatusBadge({ status }: { status: string }) {
  const word = useStatusWord();
  return (
    <Badge color={COLORS[status] ?? "gray"} variant="light" data-status={status}>
      {word(status)}
    </Badge>
  );
}

/** A failure's text; the ones the browser makes up itself (no answer from Herald) translated. */
export function useFailureText(): (error: unknown) => string {
  const { t } = useT();
  return (error) => {
    if (error instanceof ApiFailure && (error.code === "network_error" || error.code === "aborted")) return t("networkError");
    if (error instanceof ApiFailure && error.code === "bad_answer") return t("badAnswer");
    return error instanceof Error ? error.message : String(error);
  };
}

/** A campaign's progress bar with its percentage in words (for screen readers and tests). */
export function CampaignProgress({ progress, label }: { progress: Pick<P, "counts" | "status" | "total_recipients">; label: string }) {
  const value = percent(progress);
  return (
    <Group gap="xs" wrap="nowrap">
      <Progress value={value} aria-label={label} style={{ flex: 1, minWidth: 80 }} color={progress.status === "completed" ? "teal" : "blue"} animated={progress.status === "running"} />
      <Text size="sm" w={44} ta="right" data-testid="progress-percent">
        {value}%
      </Text>
    </Group>
  );
}

export function Failure({ error }: { error: unknown }) {
  const { t } = useT();
  const text = useFailureText();
  if (!error) return null;
  return (
    <Alert color="red" role="alert" title={t("error")}>
      {text(error)}
    </Alert>
  );
}

/** A timestamp in the reader's language (`document.documentElement.lang`, set by the switch). */
export function when(ts: string | null | undefined): string {
  return ts ? new Date(ts).toLocaleString(document.documentElement.lang === "id" ? "id-ID" : "en-GB") : "—";
}
