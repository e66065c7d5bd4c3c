import { beforeEach, describe, expect, it, vi } from "vitest";
import { screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";

// the API client keeps the fetch it finds when it is created: replace it before any import
const fetchMock = vi.hoisted(() => {
  const f = vi.fn();
  globalThis.fetch = f as unknown as typeof fetch;
  return f;
});

import { renderUi } from "../test-utils";
import { AuthPage } from "./Auth";
import { getToken } from "../lib/auth";

const json = (status: number, body: unknown) => new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });

/** The requests the screen made: method, path and JSON body. */
async function requests() {
  const made = fetchMock.mock.calls.map((call) => call[0] as Request);
  return Promise.all(made.map(async (req) => ({ method: req.method, path: new URL(req.url).pathname, body: await req.clone().json() })));
}

beforeEach(() => {
  fetchMock.mockReset();
  sessionStorage.clear();
  localStorage.clear();
});

describe("auth screen", () => {
  it("signs in with the email and password, keeping the token in this tab only", async () => {
    fetchMock.mockResolvedValue(json(200, { access_token: "tok-1", token_type: "Bearer", expires_in: 3600 }));
    renderUi(<AuthPage />);
    const user = userEvent.setup({ delay: null });
    await user.type(screen.getByLabelText(/^Email/), "sari@example.com");
    await user.type(screen.getByLabelText(/^Password/), "correct horse battery");
    await user.click(screen.getByRole("button", { name: "Sign in" }));
    await waitFor(() => expect(getToken()).toBe("tok-1"));
    expect(await requests()).toEqual([{ method: "POST", path: "/api/v1/auth/login", body: { email: "sari@example.com", password: "correct horse battery" } }]);
    expect(JSON.stringify(localStorage)).not.toContain("tok-1");
  });

  it("registers with a name after switching to Create account", async () => {
    fetchMock.mockResolvedValue(json(201, { access_token: "tok-2", token_type: "Bearer", expires_in: 3600 }));
    renderUi(<AuthPage />);
    const user = userEvent.setup({ delay: null });
    await user.click(screen.getByRole("button", { name: "New here? Create an account" }));
    expect(screen.getByRole("heading", { name: "Create account" })).toBeInTheDocument();
    await user.type(screen.getByLabelText(/^Email/), "toko@example.com");
    await user.type(screen.getByLabelText(/^Password/), "correct horse battery");
    await user.type(screen.getByLabelText(/^Name/), "Toko Sari");
    await user.click(screen.getByRole("button", { name: "Create account" }));
    await waitFor(() => expect(getToken()).toBe("tok-2"));
    expect(await requests()).toEqual([
      { method: "POST", path: "/api/v1/auth/register", body: { email: "toko@example.com", password: "correct horse battery", name: "Toko Sari" } },
    ]);
  });

  it("shows the API's error next to the field it names, and nowhere else", async () => {
    fetchMock.mockResolvedValue(json(422, { error: { code: "validation_failed", message: "password: at least 8 characters", details: { field: "password" } } }));
    renderUi(<AuthPage />);
    const user = userEvent.setup({ delay: null });
    await user.click(screen.getByRole("button", { name: "New here? Create an account" }));
    await user.type(screen.getByLabelText(/^Email/), "toko@example.com");
    await user.type(screen.getByLabelText(/^Password/), "short");
    await user.click(screen.getByRole("button", { name: "Create account" }));
    const password = screen.getByLabelText(/^Password/);
    await waitFor(() => expect(password).toHaveAttribute("aria-invalid", "true"));
    const message = screen.getByText("password: at least 8 characters");
    // the message is the password field's description for assistive technology, too
    expect(password.getAttribute("aria-describedby") ?? "").toContain(message.id);
    expect(screen.getByLabelText(/^Email/)).not.toHaveAttribute("aria-invalid", "true");
    expect(screen.queryByRole("alert")).toBeNull();
    expect(getToken()).toBeNull();
  });

  it("shows an error that names no field above the form", async () => {
    fetchMock.mockResolvedValue(json(401, { error: { code: "invalid_credentials", message: "wrong email or password" } }));
    renderUi(<AuthPage />);
    const user = userEvent.setup({ delay: null });
    await user.type(screen.getByLabelText(/^Email/), "sari@example.com");
    await user.type(screen.getByLabelText(/^Password/), "not the password");
    await user.click(screen.getByRole("button", { name: "Sign in" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("wrong email or password");
    expect(screen.getByLabelText(/^Password/)).not.toHaveAttribute("aria-invalid", "true");
  });

  it("speaks Bahasa Indonesia", () => {
    renderUi(<AuthPage />, "id");
    expect(screen.getByRole("heading", { name: "Masuk" })).toBeInTheDocument();
    expect(screen.getByLabelText(/^Kata sandi/)).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Baru di sini? Buat akun" })).toBeInTheDocument();
  });
});
