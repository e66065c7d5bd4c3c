import { useEffect, useState, type FormEvent } from "react";
import { Alert, Button, Card, Group, Image, NumberInput, Stack, Text, TextInput, Title } from "@mantine/core";
import { api, fieldError, formError, unwrap } from "../api/client";
import type { Session } from "../api/types";
import { useT } from "../lib/i18n";
import { useLive } from "../lib/live";
import { useData } from "../lib/useData";
import { Failure, StatusBadge } from "./common";

const QR_REFRESH_MS = 3000;

/** The pairing code, fetched again every few seconds (codes rotate) until the number connects. */
function Qr({ id }: { id: string }) {
  const { t } = useT();
  const [code, setCode] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    const load = async () => {
      const { data } = await api.GET("/api/v1/sessions/{id}/qr", { params: { path: { id } } });
      if (live && data?.qr_code) setCode(data.qr_code);
    };
    void load();
    const timer = setInterval(() => void load(), QR_REFRESH_MS);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [id]);
  return (
    <Stack gap="xs">
      <Text size="sm">{t("scanQr")}</Text>
      {code ? <Image src={code} alt={t("qrCode")} w={220} h={220} fit="contain" /> : <Text size="sm">{t("qrWaiting")}</Text>}
    </Stack>
  );
}

/** The number's pacing: the pause between two of its sends, drawn between min and max. */
function PacingForm({ s, onChange }: { s: Session; onChange: () => void }) {
  const { t } = useT();
  const [min, setMin] = useState<number | string>(s.pacing?.min_interval_ms ?? 0);
  const [max, setMax] = useState<number | string>(s.pacing?.max_interval_ms ?? 0);
  const [failure, setFailure] = useState<unknown>(null);
  const save = async (e: FormEvent) => {
    e.preventDefault();
    setFailure(null);
    try {
      unwrap(await api.PATCH("/api/v1/sessions/{id}", { params: { path: { id: s.id } }, body: { pacing: { min_interval_ms: Number(min), max_interval_ms: Number(max) } } }));
      onChange();
    } catch (err) {
      setFailure(err);
    }
  };
  return (
    <form onSubmit={save} aria-label={t("pacing")}>
      <Group align="end" gap="xs">
        <NumberInput size="xs" w={200} min={0} label={t("minInterval")} value={min} onChange={setMin} error={fieldError(failure, "pacing.min_interval_ms", "pacing")} />
        <NumberInput size="xs" w={200} min={0} label={t("maxInterval")} value={max} onChange={setMax} error={fieldError(failure, "pacing.max_interval_ms")} />
        <Button size="xs" variant="light" type="submit">
          {t("save")}
        </Button>
      </Group>
      {formError(failure, ["pacing"]) && <Failure error={failure} />}
    </form>
  );
}

function SessionCard({ s, onChange }: { s: Session; onChange: () => void }) {
  const { t } = useT();
  const [error, setError] = useState<unknown>(null);
  const run = (f: () => Promise<unknown>) => async () => {
    setError(null);
    try {
      await f();
      onChange();
    } catch (e) {
      setError(e);
    }
  };
  const params = { params: { path: { id: s.id } } };
  return (
    <Card withBorder data-session={s.id}>
      <Stack gap="xs">
        <Group justify="space-between">
          <Text fw={600}>{s.name}</Text>
          <StatusBadge status={s.status} />
        </Group>
        <PacingForm s={s} onChange={onChange} />
        {s.status === "qr_pending" && <Qr id={s.id} />}
        <Group>
          {s.status !== "connected" && <Button onClick={run(async () => unwrap(await api.POST("/api/v1/sessions/{id}/connect", params)))}>{t("connect")}</Button>}
          {s.status === "connected" && (
            <Button variant="default" onClick={run(async () => unwrap(await api.POST("/api/v1/sessions/{id}/logout", params)))}>
              {t("logout")}
            </Button>
          )}
          <Button color="red" variant="outline" onClick={run(async () => unwrap(await api.DELETE("/api/v1/sessions/{id}", params)))}>
            {t("delete")}
          </Button>
        </Group>
        <Failure error={error} />
      </Stack>
    </Card>
  );
}

export function NumbersPage() {
  const { t } = useT();
  const { data, error, reload } = useData(async () => unwrap(await api.GET("/api/v1/sessions")).items);
  const [name, setName] = useState("");
  const [token, setToken] = useState("");
  const [failure, setFailure] = useState<unknown>(null);
  useLive((n) => {
    if (n.kind === "session.status" || n.kind === "stream.lagged") reload();
  });
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setFailure(null);
    try {
      unwrap(await api.POST("/api/v1/sessions", { body: { name, gateway_token: token || null } }));
      setName("");
      setToken("");
      reload();
    } catch (err) {
      setFailure(err);
    }
  };
  const general = formError(failure, ["name", "gateway_token"]);
  return (
    <Stack>
      <Title order={1} size="h2">
        {t("numbers")}
      </Title>
      <Card withBorder maw={560}>
        <form onSubmit={submit} aria-label={t("linkNumber")}>
          <Stack>
            <Title order={2} size="h4">
              {t("linkNumber")}
            </Title>
            {general && <Alert color="red">{general}</Alert>}
            <TextInput label={t("name")} required value={name} onChange={(e) => setName(e.currentTarget.value)} error={fieldError(failure, "name")} />
            <TextInput label={t("gatewayToken")} value={token} onChange={(e) => setToken(e.currentTarget.value)} error={fieldError(failure, "gateway_token")} autoComplete="off" />
            <Group>
              <Button type="submit">{t("link")}</Button>
            </Group>
          </Stack>
        </form>
      </Card>
      <Failure error={error} />
      {data?.length === 0 && <Text c="dimmed">{t("empty")}</Text>}
      {data?.map((s) => <SessionCard key={s.id} s={s} onChange={reload} />)}
    </Stack>
  );
}
