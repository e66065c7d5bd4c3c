// The contact book: search, tag filter, favourites first (the API's order), favourite and tags
// editable in place, a contact's card, adding one, and the bulk ways in (ContactImport).
import { useState, type FormEvent } from "react";
import { Button, Card, Checkbox, Grid, Group, Stack, Table, Text, TextInput, Title } from "@mantine/core";
import { api, fieldError, formError, unwrap } from "../api/client";
import type { Contact } from "../api/types";
import { useT } from "../lib/i18n";
import { useData } from "../lib/useData";
import { Failure } from "./common";
import { ContactCard } from "./ContactCard";
import { ContactImport } from "./ContactImport";

const PAGE = 50;

/** A contact's row: favourite and tags editable in place. */
function ContactRow({ c, onChange, onOpen, opened }: { c: Contact; onChange: () => void; onOpen: () => void; opened: boolean }) {
  const { t } = useT();
  const [tags, setTags] = useState(c.tags.join(", "));
  const [failure, setFailure] = useState<unknown>(null);
  // shown at once, put back if the API refuses
  const [favorite, setFavorite] = useState(c.favorite);
  const who = c.name ?? c.phone ?? "";
  const patch = async (body: { favorite?: boolean; tags?: string[] }) => {
    setFailure(null);
    try {
      unwrap(await api.PATCH("/api/v1/contacts/{phone}", { params: { path: { phone: c.phone ?? "" } }, body }));
      onChange();
      return true;
    } catch (err) {
      setFailure(err);
      return false;
    }
  };
  return (
    <Table.Tr data-contact={c.phone ?? c.lid ?? ""} aria-selected={opened}>
      <Table.Td>
        <Checkbox
          label={t("favorite")}
          aria-label={`${t("favorite")}: ${who}`}
          checked={favorite}
          disabled={!c.phone}
          onChange={(e) => {
            const next = e.currentTarget.checked;
            setFavorite(next);
            void patch({ favorite: next }).then((ok) => ok || setFavorite(!next));
          }}
        />
      </Table.Td>
      <Table.Td>
        <Button variant="subtle" size="compact-sm" onClick={onOpen} aria-label={`${t("open")}: ${who}`}>
          {who}
        </Button>
      </Table.Td>
      <Table.Td>{c.phone ?? c.lid}</Table.Td>
      <Table.Td>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            void patch({ tags: tags.split(",").map((x) => x.trim()).filter(Boolean) });
          }}
        >
          <Group gap="xs" wrap="nowrap" align="start">
            <TextInput label={t("tags")} aria-label={`${t("tags")}: ${who}`} size="xs" value={tags} disabled={!c.phone} onChange={(e) => setTags(e.currentTarget.value)} error={fieldError(failure, "tags")} />
            <Button size="xs" type="submit" mt={22} disabled={!c.phone}>
              {t("save")}
            </Button>
          </Group>
          {formError(failure, ["tags"]) && <Failure error={failure} />}
        </form>
      </Table.Td>
    </Table.Tr>
  );
}

function AddContact({ onAdded }: { onAdded: () => void }) {
  const { t } = useT();
  const [phone, setPhone] = useState("");
  const [name, setName] = useState("");
  const [failure, setFailure] = useState<unknown>(null);
  const add = async (e: FormEvent) => {
    e.preventDefault();
    setFailure(null);
    try {
      unwrap(await api.POST("/api/v1/contacts", { body: { phone, name: name || null, fields: {} } }));
      setPhone("");
      setName("");
      onAdded();
    } catch (err) {
      setFailure(err);
    }
  };
  return (
    <form onSubmit={add} aria-label={t("addContact")}>
      <Group align="start">
        <TextInput label={t("phone")} required value={phone} onChange={(e) => setPhone(e.currentTarget.value)} error={fieldError(failure, "phone")} />
        <TextInput label={t("name")} value={name} onChange={(e) => setName(e.currentTarget.value)} error={fieldError(failure, "name")} />
        <Button type="submit" mt={24}>
          {t("addContact")}
        </Button>
      </Group>
      {formError(failure, ["phone", "name"]) && <Failure error={failure} />}
    </form>
  );
}

export function ContactsPage() {
  const { t } = useT();
  const [q, setQ] = useState("");
  const [tag, setTag] = useState("");
  const [cursors, setCursors] = useState<string[]>([]);
  const cursor = cursors[cursors.length - 1];
  const { data, error, reload } = useData(
    async () => unwrap(await api.GET("/api/v1/contacts", { params: { query: { q: q || undefined, tag: tag || undefined, limit: String(PAGE), cursor } } })),
    [q, tag, cursor],
  );
  const sessions = useData(async () => unwrap(await api.GET("/api/v1/sessions")).items);
  const [openPhone, setOpenPhone] = useState<string | null>(null);
  const items = data?.items ?? [];
  const opened = items.find((c) => (c.phone ?? c.lid) === openPhone);
  const filter = (f: () => void) => {
    f();
    setCursors([]);
  };
  return (
    <Stack>
      <Title order={1} size="h2">
        {t("contacts")}
      </Title>
      <Card withBorder>
        <Stack>
          <AddContact onAdded={reload} />
          <ContactImport sessions={sessions.data ?? []} onChanged={reload} />
        </Stack>
      </Card>
      <Group align="end">
        <TextInput label={t("search")} type="search" value={q} onChange={(e) => filter(() => setQ(e.currentTarget.value))} />
        <TextInput label={t("tag")} value={tag} onChange={(e) => filter(() => setTag(e.currentTarget.value))} />
        {tag && (
          <Button variant="default" onClick={() => filter(() => setTag(""))}>
            {t("allTags")}
          </Button>
        )}
      </Group>
      {items.some((c) => c.tags.length) && (
        <Group gap="xs">
          {[...new Set(items.flatMap((c) => c.tags))].map((tg) => (
            <Button key={tg} size="compact-xs" variant={tg === tag ? "filled" : "outline"} onClick={() => filter(() => setTag(tg))}>
              {tg}
            </Button>
          ))}
        </Group>
      )}
      <Failure error={error} />
      <Grid>
        <Grid.Col span={{ base: 12, lg: opened ? 8 : 12 }}>
          <Text size="xs" c="dimmed">
            {t("favoritesFirst")}
          </Text>
          {data && items.length === 0 && <Text c="dimmed">{t("empty")}</Text>}
          <Table.ScrollContainer minWidth={640}>
            <Table striped aria-label={t("contacts")}>
              <Table.Thead>
                <Table.Tr>
                  <Table.Th>{t("favorite")}</Table.Th>
                  <Table.Th>{t("name")}</Table.Th>
                  <Table.Th>{t("phone")}</Table.Th>
                  <Table.Th>{t("tags")}</Table.Th>
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {items.map((c) => (
                  <ContactRow
                    key={(c.phone ?? c.lid ?? "") + c.tags.join() + c.favorite}
                    c={c}
                    onChange={reload}
                    opened={(c.phone ?? c.lid) === openPhone}
                    onOpen={() => setOpenPhone((c.phone ?? c.lid ?? null) === openPhone ? null : (c.phone ?? c.lid ?? null))}
                  />
                ))}
              </Table.Tbody>
            </Table>
          </Table.ScrollContainer>
          <Group mt="xs">
            <Button variant="default" disabled={cursors.length === 0} onClick={() => setCursors([])}>
              {t("firstPage")}
            </Button>
            <Button variant="default" disabled={!data?.next_cursor} onClick={() => data?.next_cursor && setCursors([...cursors, data.next_cursor])}>
              {t("nextPage")}
            </Button>
          </Group>
        </Grid.Col>
        {opened && (
          <Grid.Col span={{ base: 12, lg: 4 }} order={{ base: -1, lg: 1 }}>
            <Stack gap="xs">
              <ContactCard contact={opened} />
              <Button variant="default" size="xs" onClick={() => setOpenPhone(null)}>
                {t("close")}
              </Button>
            </Stack>
          </Grid.Col>
        )}
      </Grid>
    </Stack>
  );
}
