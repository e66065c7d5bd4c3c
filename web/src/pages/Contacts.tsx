import { useState, type FormEvent } from "react";
import { Alert, Badge, Button, Card, Checkbox, FileInput, Group, Loader, NativeSelect, Stack, Table, Text, TextInput, Title } from "@mantine/core";
import { api, fieldError, unwrap } from "../api/client";
import type { Contact } from "../api/types";
import { getToken } from "../lib/auth";
import { useT } from "../lib/i18n";
import { useData } from "../lib/useData";
import { Failure } from "./common";

interface ImportResult {
  imported: number;
  matched: number;
  rejected: { row?: number; input?: string; reason: string }[];
  rejected_count?: number;
}

/** A contact's row: favourite and tags editable in place. */
function ContactRow({ c, onChange }: { c: Contact; onChange: () => void }) {
  const { t } = useT();
  const [tags, setTags] = useState(c.tags.join(", "));
  const patch = async (body: { favorite?: boolean; tags?: string[] }) => {
    unwrap(await api.PATCH("/api/v1/contacts/{phone}", { params: { path: { phone: c.phone ?? "" } }, body }));
    onChange();
  };
  return (
    <Table.Tr>
      <Table.Td>
        <Checkbox label={t("favorite")} checked={c.favorite} onChange={(e) => void patch({ favorite: e.currentTarget.checked })} />
      </Table.Td>
      <Table.Td>{c.name ?? ""}</Table.Td>
      <Table.Td>{c.phone}</Table.Td>
      <Table.Td>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            void patch({ tags: tags.split(",").map((x) => x.trim()).filter(Boolean) });
          }}
        >
          <Group gap="xs" wrap="nowrap">
            <TextInput label={t("tags")} size="xs" value={tags} onChange={(e) => setTags(e.currentTarget.value)} />
            <Button size="xs" type="submit" mt="lg">
              {t("save")}
            </Button>
          </Group>
        </form>
      </Table.Td>
    </Table.Tr>
  );
}

export function ContactsPage() {
  const { t } = useT();
  const [q, setQ] = useState("");
  const [tag, setTag] = useState("");
  const { data, error, reload } = useData(async () => unwrap(await api.GET("/api/v1/contacts", { params: { query: { q: q || undefined, tag: tag || undefined } } })).items, [q, tag]);
  const sessions = useData(async () => unwrap(await api.GET("/api/v1/sessions")).items);
  const [phone, setPhone] = useState("");
  const [name, setName] = useState("");
  const [failure, setFailure] = useState<unknown>(null);
  const [result, setResult] = useState<ImportResult | null>(null);
  const [syncSession, setSyncSession] = useState("");
  const [importing, setImporting] = useState(false);

  const add = async (e: FormEvent) => {
    e.preventDefault();
    setFailure(null);
    try {
      unwrap(await api.POST("/api/v1/contacts", { body: { phone, name: name || null, fields: {} } }));
      setPhone("");
      setName("");
      reload();
    } catch (err) {
      setFailure(err);
    }
  };
  const importCsv = async (file: File | null) => {
    if (!file) return;
    setFailure(null);
    setResult(null);
    setImporting(true);
    // the body is the CSV itself (streamed by Herald), so a plain fetch rather than the JSON client
    try {
      const res = await fetch("/api/v1/contacts/import", { method: "POST", headers: { Authorization: `Bearer ${getToken() ?? ""}`, "Content-Type": "text/csv" }, body: file });
      const body = await res.json();
      if (!res.ok) setFailure(new Error(body?.error?.message ?? `HTTP ${res.status}`));
      else setResult(body as ImportResult);
    } catch (err) {
      setFailure(err);
    } finally {
      setImporting(false);
      reload();
    }
  };
  const sync = async () => {
    setFailure(null);
    try {
      unwrap(await api.POST("/api/v1/contacts/sync", { body: { session_id: syncSession || sessions.data?.[0]?.id || "" } }));
      reload();
    } catch (err) {
      setFailure(err);
    }
  };
  const sorted = [...(data ?? [])].sort((a, b) => Number(b.favorite) - Number(a.favorite));
  return (
    <Stack>
      <Title order={1} size="h2">
        {t("contacts")}
      </Title>
      <Group align="end">
        <TextInput label={t("search")} value={q} onChange={(e) => setQ(e.currentTarget.value)} />
        <TextInput label={t("tag")} value={tag} onChange={(e) => setTag(e.currentTarget.value)} />
      </Group>
      <Card withBorder>
        <Stack>
          <form onSubmit={add} aria-label={t("addContact")}>
            <Group align="end">
              <TextInput label={t("phone")} required value={phone} onChange={(e) => setPhone(e.currentTarget.value)} error={fieldError(failure, "phone")} />
              <TextInput label={t("name")} value={name} onChange={(e) => setName(e.currentTarget.value)} error={fieldError(failure, "name")} />
              <Button type="submit">{t("addContact")}</Button>
            </Group>
          </form>
          <Group align="end">
            <FileInput label={t("importCsv")} w={240} accept=".csv,text/csv" onChange={(f) => void importCsv(f)} clearable />
            <NativeSelect label={t("number")} value={syncSession} onChange={(e) => setSyncSession(e.currentTarget.value)} data={(sessions.data ?? []).map((s) => ({ value: s.id, label: s.name }))} />
            <Button variant="default" onClick={() => void sync()}>
              {t("syncFromPhone")}
            </Button>
          </Group>
          {importing && (
            <Group gap="xs" role="status">
              <Loader size="sm" />
              <Text size="sm">{t("importing")}</Text>
            </Group>
          )}
          {result && (
            <Alert color={result.rejected.length ? "yellow" : "teal"}>
              {t("imported", { imported: result.imported, matched: result.matched, rejected: result.rejected_count ?? result.rejected.length })}
              {result.rejected.slice(0, 20).map((r, i) => (
                <Text size="xs" key={i}>
                  {r.row ?? ""} {r.input ?? ""}: {r.reason}
                </Text>
              ))}
            </Alert>
          )}
          {failure != null && !fieldError(failure, "phone") && !fieldError(failure, "name") ? <Failure error={failure} /> : null}
        </Stack>
      </Card>
      <Failure error={error} />
      {sorted.length === 0 && <Text c="dimmed">{t("empty")}</Text>}
      <Table.ScrollContainer minWidth={600}>
        <Table striped>
          <Table.Thead>
            <Table.Tr>
              <Table.Th>{t("favorite")}</Table.Th>
              <Table.Th>{t("name")}</Table.Th>
              <Table.Th>{t("phone")}</Table.Th>
              <Table.Th>{t("tags")}</Table.Th>
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {sorted.map((c) => (
              <ContactRow key={c.phone + c.tags.join()} c={c} onChange={reload} />
            ))}
          </Table.Tbody>
        </Table>
      </Table.ScrollContainer>
      {sorted.some((c) => c.tags.length) && (
        <Group gap="xs">
          {[...new Set(sorted.flatMap((c) => c.tags))].map((tg) => (
            <Badge key={tg} variant="outline">
              {tg}
            </Badge>
          ))}
        </Group>
      )}
    </Stack>
  );
}
