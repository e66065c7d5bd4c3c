// Filling the contact book in bulk: a CSV import (with its upload's progress and the result,
// every rejected row with its reason) and a sync from a linked phone.
import { useState } from "react";
import { Alert, Button, FileInput, Group, NativeSelect, Stack, Table, Text } from "@mantine/core";
import { api, unwrap } from "../api/client";
import type { Session } from "../api/types";
import type { components } from "../api/schema";
import { useT } from "../lib/i18n";
import { sendWithProgress, type Transfer } from "../lib/upload";
import { Failure, useFailureText } from "./common";
import { LongWork } from "./LongWork";

type ImportResult = components["schemas"]["herald_api.contact_import.ImportView"];
type SyncResult = components["schemas"]["herald_api.routes.contacts.SyncView"];

export function ImportResultView({ result }: { result: ImportResult }) {
  const { t } = useT();
  return (
    <Alert color={result.rejected_count ? "yellow" : "teal"} data-testid="import-result">
      <Text size="sm">{t("imported", { imported: result.imported, matched: result.matched, rejected: result.rejected_count })}</Text>
      {result.rejected.length > 0 && (
        <Table.ScrollContainer minWidth={300} mah={320} mt="xs">
          <Table aria-label={t("rejectedRows")} verticalSpacing={2}>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>{t("row")}</Table.Th>
                <Table.Th>{t("input")}</Table.Th>
                <Table.Th>{t("reason")}</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {result.rejected.map((r, i) => (
                <Table.Tr key={`${r.row}-${i}`}>
                  <Table.Td>{r.row}</Table.Td>
                  <Table.Td style={{ wordBreak: "break-all" }}>{r.input}</Table.Td>
                  <Table.Td>{r.reason}</Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </Table.ScrollContainer>
      )}
      {result.rejected_omitted > 0 && <Text size="xs">{t("rejectedOmitted", { n: result.rejected_omitted })}</Text>}
    </Alert>
  );
}

export function ContactImport({ sessions, onChanged }: { sessions: Session[]; onChanged: () => void }) {
  const { t } = useT();
  const failureText = useFailureText();
  const [file, setFile] = useState<File | null>(null);
  const [transfer, setTransfer] = useState<Transfer | null>(null);
  const [result, setResult] = useState<ImportResult | null>(null);
  const [importFailure, setImportFailure] = useState<unknown>(null);
  const [syncSession, setSyncSession] = useState("");
  const [synced, setSynced] = useState<SyncResult | null>(null);
  const [syncFailure, setSyncFailure] = useState<unknown>(null);

  const importCsv = async (f: File | null) => {
    setFile(f);
    if (!f) return;
    setImportFailure(null);
    setResult(null);
    try {
      // the body is the CSV itself (Herald reads it as a stream), sent with upload progress
      setResult(await sendWithProgress<ImportResult>("/api/v1/contacts/import", f, { contentType: "text/csv", onProgress: setTransfer }));
    } catch (err) {
      setImportFailure(err);
    } finally {
      setTransfer(null);
      setFile(null);
      onChanged();
    }
  };
  const sync = async () => {
    setSyncFailure(null);
    setSynced(null);
    try {
      setSynced(unwrap(await api.POST("/api/v1/contacts/sync", { body: { session_id: syncSession || sessions[0]?.id || "" } })));
      onChanged();
    } catch (err) {
      setSyncFailure(err);
    }
  };
  return (
    <Stack>
      <FileInput
        label={t("importCsv")}
        description={t("importFile")}
        maw={420}
        accept=".csv,text/csv"
        value={file}
        onChange={(f) => void importCsv(f)}
        disabled={transfer !== null}
        error={importFailure ? failureText(importFailure) : undefined}
      />
      <LongWork transfer={transfer} label={t("importCsv")} />
      {result && <ImportResultView result={result} />}
      <Group align="end">
        <NativeSelect label={t("number")} value={syncSession} onChange={(e) => setSyncSession(e.currentTarget.value)} data={sessions.map((s) => ({ value: s.id, label: s.name }))} />
        <Button variant="default" onClick={() => void sync()} disabled={sessions.length === 0}>
          {t("syncFromPhone")}
        </Button>
      </Group>
      {synced && (
        <Alert color="teal" data-testid="sync-result">
          {t("synced", { total: synced.total, added: synced.added, updated: synced.updated })}
        </Alert>
      )}
      <Failure error={syncFailure} />
    </Stack>
  );
}
