import { useDeferredValue, useMemo, useState, type FormEvent } from "react";
import { Alert, Button, FileInput, Group, NativeSelect, NumberInput, Radio, Stack, Text, TextInput, Textarea } from "@mantine/core";
import { fieldError, formError } from "../api/client";
import type { CreateCampaign, Session, Template } from "../api/types";
import { explainCron, nextRuns, parseCron } from "../lib/cron";
import { parsePhones, parseRecipientsCsv, type CsvRecipient } from "../lib/csv";
import { useT } from "../lib/i18n";
import type { Transfer } from "../lib/upload";
import { LongWork } from "./LongWork";
import { useStatusWord } from "./common";

/** Pastes longer than this (about 7,000 phones) are summarised rather than shown line by line. */
const BULK_CHARS = 100_000;

const FIELDS = ["name", "template_id", "session_id", "recipients", "audience", "send_at", "timezone", "recurrence", "pacing"];

function timeZones(): string[] {
  const intl = Intl as unknown as { supportedValuesOf?: (k: string) => string[] };
  return intl.supportedValuesOf?.("timeZone") ?? ["UTC", "Asia/Jakarta"];
}

export interface CampaignFormProps {
  templates: Template[];
  sessions: Session[];
  /**
   * Creates the campaign, reporting the request's progress (a 100,000-recipient body takes a
   * while to upload and to be accepted); a rejected promise's API failure is shown next to its field.
   */
  onSubmit: (body: CreateCampaign, onProgress: (t: Transfer) => void) => Promise<void>;
}

export function CampaignForm({ templates, sessions, onSubmit }: CampaignFormProps) {
  const { t, lang } = useT();
  const word = useStatusWord();
  const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const [name, setName] = useState("");
  const [templateId, setTemplateId] = useState(templates.find((x) => x.status === "active")?.id ?? "");
  const [sessionId, setSessionId] = useState(sessions[0]?.id ?? "");
  const [source, setSource] = useState<"pasted" | "csv" | "tag">("pasted");
  const [pasted, setPasted] = useState("");
  // a big paste (100,000 phones) is kept out of the text box: a browser takes seconds to lay out
  // and paint that many lines on every change, so the box gives way to a summary
  const [bulk, setBulk] = useState<string | null>(null);
  const [csv, setCsv] = useState<{ recipients: CsvRecipient[]; error?: string } | null>(null);
  const [tag, setTag] = useState("");
  const [timing, setTiming] = useState<"now" | "at" | "recurring">("now");
  const [sendAt, setSendAt] = useState("");
  const [timezone, setTimezone] = useState(browserZone);
  const [cron, setCron] = useState("0 9 * * MON");
  const [minMs, setMinMs] = useState<number | string>("");
  const [maxMs, setMaxMs] = useState<number | string>("");
  const [failure, setFailure] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [transfer, setTransfer] = useState<Transfer | null>(null);

  const parsedCron = useMemo(() => (timing === "recurring" ? parseCron(cron) : null), [cron, timing]);
  // the browser's own zone may be missing from the list (Intl leaves out "UTC"): the select must show it
  const zones = useMemo(() => {
    const all = timeZones();
    return all.includes(browserZone) ? all : [browserZone, ...all];
  }, [browserZone]);

  const readCsv = async (file: File | null) => {
    setCsv(file ? parseRecipientsCsv(await file.text()) : null);
  };

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const body: CreateCampaign = { name, template_id: templateId, session_id: sessionId } as CreateCampaign;
    if (source === "pasted") body.recipients = parsePhones(bulk ?? pasted) as CreateCampaign["recipients"];
    if (source === "csv") body.recipients = (csv?.recipients ?? []) as CreateCampaign["recipients"];
    if (source === "tag") body.audience = { tag } as unknown as CreateCampaign["audience"];
    if (timing === "now") body.send_at = "now";
    if (timing === "at") {
      body.send_at = sendAt;
      body.timezone = timezone;
    }
    if (timing === "recurring") {
      body.recurrence = cron;
      body.timezone = timezone;
    }
    if (minMs !== "" || maxMs !== "") body.pacing = { min_interval_ms: Number(minMs || 0), max_interval_ms: Number(maxMs || minMs || 0) } as CreateCampaign["pacing"];
    setBusy(true);
    setFailure(null);
    try {
      await onSubmit(body, setTransfer);
    } catch (err) {
      setFailure(err);
    } finally {
      setBusy(false);
      setTransfer(null);
    }
  };

  const general = formError(failure, FIELDS);
  const recipientsError = fieldError(failure, "recipients");
  // counted from a deferred copy: a 100,000-line paste stays responsive (no autosize either: it
  // measures every line on each change)
  const deferredPasted = useDeferredValue(bulk ?? pasted);
  const pastedCount = useMemo(() => (source === "pasted" ? parsePhones(deferredPasted).length : 0), [deferredPasted, source]);
  const onPasted = (text: string) => {
    if (text.length > BULK_CHARS) {
      setBulk(text);
      setPasted("");
    } else setPasted(text);
  };
  const session = sessions.find((s) => s.id === sessionId);
  const pacing = session?.pacing;
  const sessionPacing =
    pacing && (pacing.min_interval_ms || pacing.max_interval_ms)
      ? t("pacingOfNumber", { min: pacing.min_interval_ms, max: pacing.max_interval_ms })
      : t("pacingNoneOfNumber");
  return (
    <form onSubmit={submit} aria-label={t("newCampaign")}>
      <Stack maw={720}>
        {general && (
          <Alert color="red" role="alert">
            {general}
          </Alert>
        )}
        <TextInput label={t("name")} required value={name} onChange={(e) => setName(e.currentTarget.value)} error={fieldError(failure, "name")} />
        <NativeSelect
          label={t("template")}
          required
          value={templateId}
          onChange={(e) => setTemplateId(e.currentTarget.value)}
          error={fieldError(failure, "template_id")}
          data={[{ value: "", label: "—" }, ...templates.map((x) => ({ value: x.id, label: `${x.name} (${word(x.status)})`, disabled: x.status !== "active" }))]}
        />
        <NativeSelect
          label={t("number")}
          required
          value={sessionId}
          onChange={(e) => setSessionId(e.currentTarget.value)}
          error={fieldError(failure, "session_id")}
          data={[{ value: "", label: "—" }, ...sessions.map((s) => ({ value: s.id, label: `${s.name} (${word(s.status)})` }))]}
        />
        <Radio.Group label={t("recipientsSource")} value={source} onChange={(v) => setSource(v as typeof source)}>
          <Group mt="xs">
            <Radio value="pasted" label={t("pasted")} />
            <Radio value="csv" label={t("csvFile")} />
            <Radio value="tag" label={t("tagAudience")} />
          </Group>
        </Radio.Group>
        {source === "pasted" && bulk === null && (
          <Textarea label={t("phonesOnePerLine")} rows={8} resize="vertical" spellCheck={false} value={pasted} onChange={(e) => onPasted(e.currentTarget.value)} error={recipientsError} description={t("phonesCount", { n: pastedCount })} />
        )}
        {source === "pasted" && bulk !== null && (
          <Stack gap={4}>
            <Text size="sm" fw={500}>
              {t("phonesOnePerLine")}
            </Text>
            <Group data-testid="bulk-paste">
              <Text size="sm">{t("bulkPasted", { n: pastedCount })}</Text>
              <Button variant="default" size="xs" onClick={() => setBulk(null)}>
                {t("clearList")}
              </Button>
            </Group>
            {recipientsError && (
              <Text size="sm" c="red" role="alert">
                {recipientsError}
              </Text>
            )}
          </Stack>
        )}
        {source === "csv" && (
          <>
            <FileInput label={t("csvWithPhone")} accept=".csv,text/csv" onChange={readCsv} error={csv?.error ?? recipientsError} clearable />
            {csv && !csv.error && <Text size="sm">{t("recipients")}: {csv.recipients.length}</Text>}
          </>
        )}
        {source === "tag" && <TextInput label={t("tag")} required value={tag} onChange={(e) => setTag(e.currentTarget.value)} error={fieldError(failure, "audience")} />}
        <Radio.Group label={t("when")} value={timing} onChange={(v) => setTiming(v as typeof timing)}>
          <Group mt="xs">
            <Radio value="now" label={t("sendNow")} />
            <Radio value="at" label={t("sendAt")} />
            <Radio value="recurring" label={t("recurring")} />
          </Group>
        </Radio.Group>
        {timing === "at" && <TextInput type="datetime-local" label={t("sendAtTime")} required value={sendAt} onChange={(e) => setSendAt(e.currentTarget.value)} error={fieldError(failure, "send_at")} />}
        {timing === "recurring" && (
          <>
            <TextInput label={t("cron")} required value={cron} onChange={(e) => setCron(e.currentTarget.value)} error={fieldError(failure, "recurrence")} description={parsedCron ? t("cronExplained", { words: explainCron(parsedCron, lang) }) : undefined} />
            {parsedCron && (
              <Text size="sm" data-testid="next-runs">
                {nextRuns(parsedCron, new Date()).map((d) => d.toLocaleString(lang === "id" ? "id-ID" : "en-GB")).join(" · ")}
              </Text>
            )}
          </>
        )}
        {timing !== "now" && <NativeSelect label={t("timezone")} value={timezone} onChange={(e) => setTimezone(e.currentTarget.value)} data={zones} error={fieldError(failure, "timezone")} />}
        <Stack gap={4}>
          <Group grow align="start">
            <NumberInput label={t("minInterval")} min={0} value={minMs} onChange={setMinMs} error={fieldError(failure, "pacing", "pacing.min_interval_ms")} />
            <NumberInput label={t("maxInterval")} min={0} value={maxMs} onChange={setMaxMs} error={fieldError(failure, "pacing.max_interval_ms")} />
          </Group>
          <Text size="xs" c="dimmed" data-testid="pacing-hint">
            {t("pacingEmptyMeans")} {sessionPacing}
          </Text>
        </Stack>
        <Group>
          <Button type="submit" loading={busy}>
            {t("createCampaign")}
          </Button>
        </Group>
        <LongWork transfer={transfer} label={t("createCampaign")} />
      </Stack>
    </form>
  );
}
