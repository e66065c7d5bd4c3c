import { useMemo, useState } from "react";
import { Alert, Button, Card, Code, Group, NativeSelect, SimpleGrid, Stack, Table, Text, Title } from "@mantine/core";
import { api, ApiFailure, unwrap } from "../api/client";
import type { Campaign } from "../api/types";
import { explainCron, parseCron } from "../lib/cron";
import { download } from "../lib/download";
import { useT } from "../lib/i18n";
import { useLive } from "../lib/live";
import { FINAL_STATUSES } from "../lib/progress";
import { Link, useLocation } from "../lib/router";
import { soonAndAgain, throttle, useData } from "../lib/useData";
import { liveCampaign } from "./Campaigns";
import { CampaignProgress, Failure, StatusBadge, useStatusWord, when } from "./common";

const RECIPIENT_STATUSES = ["queued", "sending", "sent", "delivered", "read", "failed", "skipped"];
const PAGE = 50;

function Recipients({ id, version }: { id: string; version: number }) {
  const { t } = useT();
  const word = useStatusWord();
  const [status, setStatus] = useState("");
  // the cursors of the pages before this one, so "first page" and paging forward stay cheap
  const [cursors, setCursors] = useState<string[]>([]);
  const cursor = cursors[cursors.length - 1];
  const { data, error } = useData(
    async () => unwrap(await api.GET("/api/v1/campaigns/{id}/recipients", { params: { path: { id }, query: { status: status || undefined, limit: String(PAGE), cursor }  } })),
    [id, status, cursor, version],
  );
  return (
    <Stack>
      <Group align="end">
        <NativeSelect
          label={t("status")}
          value={status}
          onChange={(e) => {
            setStatus(e.currentTarget.value);
            setCursors([]);
          }}
          data={[{ value: "", label: t("allStatuses") }, ...RECIPIENT_STATUSES.map((v) => ({ value: v, label: word(v) }))]}
        />
        <Button variant="default" disabled={cursors.length === 0} onClick={() => setCursors([])}>
          {t("firstPage")}
        </Button>
        <Button variant="default" disabled={!data?.next_cursor} onClick={() => data?.next_cursor && setCursors([...cursors, data.next_cursor])}>
          {t("nextPage")}
        </Button>
      </Group>
      <Failure error={error} />
      <Table.ScrollContainer minWidth={520}>
        <Table striped aria-label={t("recipients")}>
          <Table.Thead>
            <Table.Tr>
              <Table.Th>{t("phone")}</Table.Th>
              <Table.Th>{t("status")}</Table.Th>
              <Table.Th>{t("sentAt")}</Table.Th>
              <Table.Th>{t("error")}</Table.Th>
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {data?.items.map((r) => (
              <Table.Tr key={r.phone}>
                <Table.Td>{r.phone}</Table.Td>
                <Table.Td>
                  <StatusBadge status={r.status} />
                </Table.Td>
                <Table.Td>{when(r.sent_at)}</Table.Td>
                <Table.Td>{r.error ?? ""}</Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </Table.ScrollContainer>
    </Stack>
  );
}

/** A recurring campaign's schedule and occurrences: each run it started, or why it did not. */
function Runs({ id, recurrence }: { id: string; recurrence: { cron: string; timezone: string } }) {
  const { t, lang } = useT();
  const { data, reload } = useData(async () => unwrap(await api.GET("/api/v1/campaigns/{id}/occurrences", { params: { path: { id } } })).items, [id]);
  // a run is a campaign of its own: its first status is the moment the list grows
  useLive((n) => {
    if (n.kind === "stream.lagged" || (n.kind === "campaign.status" && n.data.campaign_id !== id)) soonAndAgain(reload, [300, 1500]);
  });
  const cron = parseCron(recurrence.cron);
  return (
    <Stack gap="xs">
      <Title order={2} size="h3">
        {t("runs")}
      </Title>
      <Text size="sm" data-testid="recurrence">
        <Code>{recurrence.cron}</Code> ({recurrence.timezone}){cron ? ` · ${t("cronExplained", { words: explainCron(cron, lang) })}` : ""}
      </Text>
      {data && data.length === 0 && (
        <Text size="sm" c="dimmed">
          {t("noRunsYet")}
        </Text>
      )}
      {data && data.length > 0 && (
        <Table aria-label={t("runs")}>
          <Table.Tbody>
            {data.map((o) => (
              <Table.Tr key={o.occurrence_at}>
                <Table.Td>{when(o.occurrence_at)}</Table.Td>
                <Table.Td>
                  <StatusBadge status={o.status} />
                </Table.Td>
                <Table.Td>{o.run_id ? <Link href={`/campaigns/${o.run_id}`}>{t("openRun")}</Link> : (o.reason ?? "")}</Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      )}
    </Stack>
  );
}

/** The pause between two sends: the campaign's own pacing, or its number's. */
function PacingLine({ c }: { c: Campaign }) {
  const { t } = useT();
  const session = useData(async () => (c.pacing ? null : unwrap(await api.GET("/api/v1/sessions/{id}", { params: { path: { id: c.session_id } } }))), [c.session_id, c.pacing]);
  const own = c.pacing;
  const pacing = own ?? session.data?.pacing;
  const words =
    pacing && (pacing.min_interval_ms || pacing.max_interval_ms)
      ? t("pacingRange", { min: pacing.min_interval_ms, max: pacing.max_interval_ms })
      : t("pacingNone");
  return (
    <Text size="sm" data-testid="campaign-pacing">
      {t("pacing")}: {words} · {own ? t("pacingOwn") : t("pacingNumbers")}
    </Text>
  );
}

/** Why Herald paused the campaign, and recipients waiting for the send window or a daily cap. */
function SafeSendingNotes({ c }: { c: Campaign }) {
  const { t } = useT();
  const reasons = ["session_disconnected", "failure_spike", "spam_rate_limit", "gateway_auth"] as const;
  const reason = reasons.find((r) => r === c.pause_reason);
  return (
    <>
      {c.status === "paused" && c.pause_reason && (
        <Alert color="red" data-pause-reason={c.pause_reason}>
          {t("pausedBecause", { reason: reason ? t(`reason_${reason}`) : c.pause_reason })}
        </Alert>
      )}
      {c.counts.waiting_window > 0 && c.next_window_at && (
        <Alert color="blue">{t("waitingForWindow", { n: c.counts.waiting_window, at: when(c.next_window_at) })}</Alert>
      )}
      {c.counts.waiting_cap > 0 && <Alert color="blue">{t("waitingForCap", { n: c.counts.waiting_cap })}</Alert>}
    </>
  );
}

export function CampaignDetailPage({ id }: { id: string }) {
  const { t } = useT();
  const word = useStatusWord();
  const { query: q0 } = useLocation();
  // a campaign just created (`?created=1`) may not be readable yet: its read model follows a
  // moment later, longer while Herald is busy (cancelling 100,000 recipients, say), so its 404
  // is asked again for up to a minute; any other 404 for about 3 s
  const tries = q0.get("created") ? 200 : 10;
  const { data, setData, error, reload } = useData(async () => {
    for (let attempt = 0; ; attempt++) {
      try {
        return unwrap(await api.GET("/api/v1/campaigns/{id}", { params: { path: { id } } }));
      } catch (e) {
        if (!(e instanceof ApiFailure && e.status === 404) || attempt >= tries) throw e;
        await new Promise((r) => setTimeout(r, 300));
      }
    }
  }, [id]);
  const [actionError, setActionError] = useState<unknown>(null);
  const [version, setVersion] = useState(0);
  // the recipients table follows the counts, re-read at most every 2 s (and after the end)
  const refreshTable = useMemo(() => throttle(() => setVersion((v) => v + 1), 2000), []);
  useLive((n) => {
    if (n.kind === "stream.lagged") return reload();
    if (n.data.campaign_id !== id) return;
    setData((c) => (c ? liveCampaign(c, n) : c));
    if (n.kind === "campaign.status") {
      soonAndAgain(refreshTable);
      // a pause may carry the circuit breaker's reason: read the campaign again
      if (n.data.status === "paused") reload();
      // the last counts may come after the final status (progress is coalesced): read them
      if (FINAL_STATUSES.includes(String(n.data.status))) {
        soonAndAgain(() => {
          reload();
          setVersion((v) => v + 1);
        });
      }
    }
    if (n.kind === "campaign.progress") refreshTable();
  });

  const act = (action: "pause" | "resume" | "cancel") => async () => {
    setActionError(null);
    try {
      const params = { params: { path: { id } } };
      if (action === "pause") unwrap(await api.POST("/api/v1/campaigns/{id}/pause", params));
      if (action === "resume") unwrap(await api.POST("/api/v1/campaigns/{id}/resume", params));
      if (action === "cancel") unwrap(await api.POST("/api/v1/campaigns/{id}/cancel", params));
      reload();
    } catch (e) {
      setActionError(e);
    }
  };

  if (!data) return error ? <Failure error={error} /> : <Text>{t("loading")}</Text>;
  const c: Campaign = data;
  const rejected = q0.get("rejected");
  const final = FINAL_STATUSES.includes(c.status);
  return (
    <Stack>
      <Link href="/campaigns">← {t("back")}</Link>
      <Group justify="space-between">
        <Title order={1} size="h2">
          {c.name}
        </Title>
        <StatusBadge status={c.status} />
      </Group>
      {rejected && <Alert color="yellow">{t("rejectedInputs", { n: rejected })}</Alert>}
      <SafeSendingNotes c={c} />
      <CampaignProgress progress={c} label={t("progress")} />
      <SimpleGrid cols={{ base: 2, sm: 4 }} aria-label={t("status")}>
        {Object.entries(c.counts).map(([k, v]) => (
          <Card key={k} withBorder padding="xs" data-count={k}>
            <Text size="xs" c="dimmed">
              {word(k)}
            </Text>
            <Text fw={700}>{v}</Text>
          </Card>
        ))}
      </SimpleGrid>
      <Text size="sm">
        {t("recipients")}: {c.total_recipients} · {t("created")}: {when(c.created_at)}
      </Text>
      <PacingLine c={c} />
      <Group>
        {c.status === "running" && <Button onClick={act("pause")}>{t("pause")}</Button>}
        {c.status === "paused" && <Button onClick={act("resume")}>{t("resume")}</Button>}
        {!final && (
          <Button color="red" variant="outline" onClick={act("cancel")}>
            {t("cancelCampaign")}
          </Button>
        )}
        <Button variant="default" onClick={() => download(`/api/v1/campaigns/${id}/recipients.csv`, `${c.name}-recipients.csv`).catch(setActionError)}>
          {t("exportCsv")}
        </Button>
      </Group>
      <Failure error={actionError} />
      {c.recurrence && <Runs id={id} recurrence={c.recurrence} />}
      <Title order={2} size="h3">
        {t("recipients")}
      </Title>
      <Recipients id={id} version={version} />
    </Stack>
  );
}
