import { useState, type FormEvent, type ReactNode } from "react";
import { Alert, Anchor, Button, Card, Center, PasswordInput, Stack, TextInput, Title } from "@mantine/core";
import { api, fieldError, formError, unwrap } from "../api/client";
import { setToken } from "../lib/auth";
import { useT } from "../lib/i18n";

/** Sign in, or create an account (a new tenant); either way the answer's token signs in. */
export function AuthPage({ languageSelect }: { languageSelect?: ReactNode }) {
  const { t } = useT();
  const [mode, setMode] = useState<"login" | "register">("login");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [name, setName] = useState("");
  const [failure, setFailure] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setFailure(null);
    try {
      const answer =
        mode === "login"
          ? unwrap(await api.POST("/api/v1/auth/login", { body: { email, password } }))
          : unwrap(await api.POST("/api/v1/auth/register", { body: { email, password, name: name || null } }));
      setToken(answer.access_token);
    } catch (err) {
      setFailure(err);
    } finally {
      setBusy(false);
    }
  };

  const fields = ["email", "password", "name"];
  const general = formError(failure, fields);
  return (
    <Center mih="100vh" p="md">
      <Card withBorder w="100%" maw={420} padding="lg">
        <form onSubmit={submit} aria-label={mode === "login" ? t("signIn") : t("register")}>
          <Stack>
            <Title order={1} size="h2">
              {mode === "login" ? t("signIn") : t("register")}
            </Title>
            {general && (
              <Alert color="red" role="alert">
                {general}
              </Alert>
            )}
            <TextInput label={t("email")} type="email" required autoComplete="email" value={email} onChange={(e) => setEmail(e.currentTarget.value)} error={fieldError(failure, "email")} />
            <PasswordInput label={t("password")} required autoComplete={mode === "login" ? "current-password" : "new-password"} value={password} onChange={(e) => setPassword(e.currentTarget.value)} error={fieldError(failure, "password")} aria-invalid={fieldError(failure, "password") ? true : undefined} />
            {mode === "register" && <TextInput label={t("name")} value={name} onChange={(e) => setName(e.currentTarget.value)} error={fieldError(failure, "name")} />}
            <Button type="submit" loading={busy}>
              {mode === "login" ? t("signIn") : t("register")}
            </Button>
            <Anchor component="button" type="button" onClick={() => { setMode(mode === "login" ? "register" : "login"); setFailure(null); }}>
              {mode === "login" ? t("noAccount") : t("haveAccount")}
            </Anchor>
            {languageSelect}
          </Stack>
        </form>
      </Card>
    </Center>
  );
}
