import { useEffect, useRef, useState, type FormEvent } from "react";
import { Badge, Box, Button, Card, Grid, Group, Paper, ScrollArea, Stack, Text, Textarea, Title, UnstyledButton } from "@mantine/core";
import { api, fieldError, formError, unwrap } from "../api/client";
import type { Chat, ChatMessage } from "../api/types";
import { useT } from "../lib/i18n";
import { useLive } from "../lib/live";
import { Link, navigate } from "../lib/router";
import { soonAndAgain, useData } from "../lib/useData";
import { Failure, when } from "./common";
import { ContactCard } from "./ContactCard";

/** The phone of a one-to-one chat (`6281...@s.whatsapp.net` → `6281...`). */
export function chatPhone(chat: Pick<Chat, "jid">): string {
  return chat.jid.split("@")[0].split(":")[0];
}

function ChatList({ chats, selected }: { chats: Chat[]; selected?: string }) {
  const { t } = useT();
  if (chats.length === 0) return <Text c="dimmed">{t("empty")}</Text>;
  return (
    <Stack gap={4} component="ul" p={0} m={0} style={{ listStyle: "none" }} aria-label={t("chats")}>
      {chats.map((c) => (
        <li key={c.id}>
          <UnstyledButton
            component={Link}
            href={`/chats/${c.id}`}
            p="xs"
            w="100%"
            data-chat={c.id}
            aria-current={c.id === selected ? "page" : undefined}
            style={{ display: "block", borderRadius: 6, background: c.id === selected ? "var(--mantine-color-teal-light)" : undefined }}
          >
            <Group justify="space-between" wrap="nowrap">
              <Text fw={c.unread_count ? 700 : 400} truncate>
                {c.name || chatPhone(c)}
              </Text>
              {c.unread_count > 0 && (
                <Badge color="teal" circle={c.unread_count < 10} aria-label={t("unread", { n: c.unread_count })} data-testid="unread">
                  {c.unread_count}
                </Badge>
              )}
            </Group>
            <Text size="xs" c="dimmed" truncate>
              {c.last_message?.text ?? ""}
            </Text>
          </UnstyledButton>
        </li>
      ))}
    </Stack>
  );
}

/** The chat's contact, when the phone is one: its card (name, favourite, tags, fields). */
function ChatContact({ phone }: { phone: string }) {
  const { data } = useData(async () => (await api.GET("/api/v1/contacts/{phone}", { params: { path: { phone } } })).data ?? null, [phone]);
  return data ? <ContactCard contact={data} /> : null;
}

function Conversation({ chat, onSent }: { chat: Chat; onSent: () => void }) {
  const { t } = useT();
  const [messages, setMessages] = useState<ChatMessage[]>([]);
  const [older, setOlder] = useState<string | null>(null);
  const [text, setText] = useState("");
  const [failure, setFailure] = useState<unknown>(null);
  const bottom = useRef<HTMLDivElement>(null);
  // what is on screen, for the refreshes that merge into it
  const shown = useRef<ChatMessage[]>([]);

  const loadLatest = async () => {
    const page = unwrap(await api.GET("/api/v1/chats/{id}/messages", { params: { path: { id: chat.id }, query: { limit: "50" } } }));
    const latest = page.items.slice().reverse();
    // a refresh keeps the older pages already read (a late refresh must not take them away)
    const ids = new Set(latest.map((m) => m.id));
    const oldest = latest[0]?.timestamp;
    const kept = oldest ? shown.current.filter((m) => !ids.has(m.id) && m.timestamp < oldest) : [];
    shown.current = [...kept, ...latest];
    setMessages(shown.current);
    if (kept.length === 0) setOlder(page.next_cursor ?? null);
    await api.POST("/api/v1/chats/{id}/read", { params: { path: { id: chat.id } } });
  };
  useEffect(() => {
    void loadLatest().catch(setFailure);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [chat.id]);
  useEffect(() => {
    // braces: scrollIntoView may return a promise, and an effect must return nothing or a cleanup
    bottom.current?.scrollIntoView?.({ block: "end" });
  }, [messages.length]);
  useLive((n) => {
    if ((n.kind === "message.received" && n.data.chat === chat.jid) || (n.kind === "delivery.status" && messages.some((m) => m.id === n.data.message_id))) {
      soonAndAgain(() => void loadLatest());
    }
  });

  const loadOlder = async () => {
    if (!older) return;
    const page = unwrap(await api.GET("/api/v1/chats/{id}/messages", { params: { path: { id: chat.id }, query: { before: older, limit: "50" } } }));
    shown.current = [...page.items.slice().reverse(), ...shown.current];
    setMessages(shown.current);
    setOlder(page.next_cursor ?? null);
  };

  const send = async (e: FormEvent) => {
    e.preventDefault();
    if (!text.trim()) return;
    setFailure(null);
    try {
      unwrap(await api.POST("/api/v1/messages", { body: { session_id: chat.session_id, to: chatPhone(chat), type: "text", body: text } }));
      setText("");
      // the chat's read model records the send a moment later (its own projector)
      soonAndAgain(() => void loadLatest().catch(setFailure), [0, 500, 2000, 5000]);
      onSent();
    } catch (err) {
      setFailure(err);
    }
  };

  return (
    <Stack>
      <Group justify="space-between">
        <Title order={2} size="h3">
          {chat.name || chatPhone(chat)}
        </Title>
        <Text size="sm" c="dimmed">
          {chatPhone(chat)}
        </Text>
      </Group>
      <ScrollArea h={420} type="auto">
        <Stack gap="xs" p="xs" aria-label={t("chats")} aria-live="polite">
          {older && (
            <Button variant="subtle" size="xs" onClick={() => void loadOlder()}>
              {t("olderMessages")}
            </Button>
          )}
          {messages.map((m) => (
            <Group key={m.id} justify={m.direction === "incoming" ? "flex-start" : "flex-end"}>
              <Paper p="xs" maw="80%" bg={m.direction === "incoming" ? "gray.1" : "teal.1"} data-direction={m.direction}>
                <Text size="sm" style={{ whiteSpace: "pre-wrap", wordBreak: "break-word" }}>
                  {m.text ?? `[${m.type}]`}
                </Text>
                <Text size="xs" c="dimmed">
                  {when(m.timestamp)} {m.direction === "outgoing" && m.status ? `· ${m.status}` : ""}
                </Text>
              </Paper>
            </Group>
          ))}
          <div ref={bottom} />
        </Stack>
      </ScrollArea>
      <form onSubmit={send} aria-label={t("reply")}>
        <Stack gap="xs">
          {formError(failure, ["body", "to"]) && <Failure error={failure} />}
          <Textarea label={t("reply")} autosize minRows={2} value={text} onChange={(e) => setText(e.currentTarget.value)} error={fieldError(failure, "body", "to")} />
          <Group justify="flex-end">
            <Button type="submit">{t("send")}</Button>
          </Group>
        </Stack>
      </form>
    </Stack>
  );
}

export function ChatsPage({ chatId }: { chatId?: string }) {
  const { t } = useT();
  const { data, error, reload } = useData(async () => unwrap(await api.GET("/api/v1/chats")).items);
  useLive((n) => {
    if (n.kind === "message.received" || n.kind === "stream.lagged") soonAndAgain(reload);
  });
  const selected = data?.find((c) => c.id === chatId);
  useEffect(() => {
    // opening a chat marks it read: the list's badge goes with it
    if (selected?.unread_count) setTimeout(reload, 300);
  }, [selected?.id, selected?.unread_count, reload]);
  return (
    <Stack>
      <Title order={1} size="h2">
        {t("chats")}
      </Title>
      <Failure error={error} />
      <Grid>
        <Grid.Col span={{ base: 12, md: 4, lg: 3 }} display={{ base: chatId ? "none" : "block", md: "block" }}>
          <Card withBorder p="xs">
            {data ? <ChatList chats={data} selected={chatId} /> : <Text>{t("loading")}</Text>}
          </Card>
        </Grid.Col>
        <Grid.Col span={{ base: 12, md: 8, lg: 6 }}>
          {selected ? (
            <Box>
              <Button variant="subtle" hiddenFrom="md" onClick={() => navigate("/chats")}>
                ← {t("back")}
              </Button>
              <Conversation key={selected.id} chat={selected} onSent={reload} />
            </Box>
          ) : (
            <Text c="dimmed">{t("chooseChat")}</Text>
          )}
        </Grid.Col>
        {selected && (
          <Grid.Col span={{ base: 12, md: 8, lg: 3 }} offset={{ base: 0, md: 4, lg: 0 }}>
            <ChatContact phone={chatPhone(selected)} />
          </Grid.Col>
        )}
      </Grid>
    </Stack>
  );
}
