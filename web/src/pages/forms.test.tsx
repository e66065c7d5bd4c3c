import { describe, expect, it, vi } from "vitest";
import { act, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { ApiFailure } from "../api/client";
import type { Transfer } from "../lib/upload";
import type { Session, Template } from "../api/types";
import { renderUi } from "../test-utils";
import { CampaignForm } from "./CampaignForm";
import { TemplateForm } from "./Templates";

const templates = [
  { id: "t1", name: "Promo", status: "active", type: "text", body: "Hi {{ name }}" },
  { id: "t2", name: "Old", status: "archived", type: "text", body: "x" },
] as unknown as Template[];
const sessions = [{ id: "s1", name: "Main number", status: "connected" }] as unknown as Session[];

describe("campaign form", () => {
  it("sends the pasted phones now with the chosen template and number", async () => {
    const onSubmit = vi.fn().mockResolvedValue(undefined);
    renderUi(<CampaignForm templates={templates} sessions={sessions} onSubmit={onSubmit} />);
    const user = userEvent.setup({ delay: null });
    await user.type(screen.getByLabelText(/^Name/), "December promo");
    await user.type(screen.getByLabelText(/Phones, one per line/), "6281234567890\n6281234567891");
    await user.click(screen.getByRole("button", { name: "Create campaign" }));
    await waitFor(() => expect(onSubmit).toHaveBeenCalled());
    expect(onSubmit.mock.calls[0][0]).toEqual({
      name: "December promo",
      template_id: "t1",
      session_id: "s1",
      recipients: ["6281234567890", "6281234567891"],
      send_at: "now",
    });
  });

  it("schedules a recurring campaign in a time zone and shows the next runs", async () => {
    const onSubmit = vi.fn().mockResolvedValue(undefined);
    renderUi(<CampaignForm templates={templates} sessions={sessions} onSubmit={onSubmit} />);
    const user = userEvent.setup({ delay: null });
    await user.type(screen.getByLabelText(/^Name/), "Weekly");
    await user.click(screen.getByLabelText("Contacts with a tag"));
    await user.type(screen.getByLabelText(/^Tag/), "vip");
    await user.click(screen.getByLabelText("Recurring"));
    expect(screen.getByText(/Runs on Monday, at 09:00/)).toBeInTheDocument();
    expect(screen.getByTestId("next-runs").textContent).toContain("·");
    await user.selectOptions(screen.getByLabelText("Time zone"), "Asia/Jakarta");
    await user.click(screen.getByRole("button", { name: "Create campaign" }));
    await waitFor(() => expect(onSubmit).toHaveBeenCalled());
    expect(onSubmit.mock.calls[0][0]).toMatchObject({ audience: { tag: "vip" }, recurrence: "0 9 * * MON", timezone: "Asia/Jakarta" });
    expect(onSubmit.mock.calls[0][0].send_at).toBeUndefined();
  });

  it("shows the API's error next to the field it names", async () => {
    const onSubmit = vi.fn().mockRejectedValue(new ApiFailure(422, "validation_failed", "send_at: the time is in the past", "send_at"));
    renderUi(<CampaignForm templates={templates} sessions={sessions} onSubmit={onSubmit} />);
    const user = userEvent.setup({ delay: null });
    await user.type(screen.getByLabelText(/^Name/), "Late");
    await user.click(screen.getByLabelText("At a time"));
    await user.type(screen.getByLabelText(/Date and time/), "2020-01-01T09:00");
    await user.click(screen.getByRole("button", { name: "Create campaign" }));
    const input = await screen.findByLabelText(/Date and time/);
    await waitFor(() => expect(input).toHaveAttribute("aria-invalid", "true"));
    expect(screen.getByText("send_at: the time is in the past")).toBeInTheDocument();
    expect(screen.queryByRole("alert")).toBeNull();
  });

  it("shows the upload's progress, then Herald accepting with the time elapsed", async () => {
    let report: (t: Transfer) => void = () => {};
    let finish: () => void = () => {};
    const onSubmit = vi.fn((_body: unknown, onProgress: (t: Transfer) => void) => {
      report = onProgress;
      return new Promise<void>((done) => (finish = done));
    });
    renderUi(<CampaignForm templates={templates} sessions={sessions} onSubmit={onSubmit} />);
    const user = userEvent.setup({ delay: null });
    await user.type(screen.getByLabelText(/^Name/), "Big");
    await user.type(screen.getByLabelText(/Phones, one per line/), "6281234567890");
    await user.click(screen.getByRole("button", { name: "Create campaign" }));
    await waitFor(() => expect(onSubmit).toHaveBeenCalled());
    act(() => report({ phase: "uploading", loaded: 512 * 1024, total: 2 * 1024 * 1024, since: Date.now() }));
    expect(screen.getByRole("status")).toHaveTextContent("Sending 512 KB of 2.0 MB (25%)");
    expect(screen.getByRole("progressbar", { name: "Create campaign" })).toHaveAttribute("aria-valuenow", "25");
    act(() => report({ phase: "accepting", total: 2 * 1024 * 1024, since: Date.now() - 3000 }));
    expect(screen.getByRole("status")).toHaveTextContent("Sent 2.0 MB; Herald is accepting it… 3 s");
    act(() => finish());
    await waitFor(() => expect(screen.queryByRole("status")).toBeNull());
  });

  it("shows the chosen number's pacing as what empty pacing means", () => {
    const paced = [{ ...sessions[0], pacing: { min_interval_ms: 3000, max_interval_ms: 8000 } }] as unknown as Session[];
    renderUi(<CampaignForm templates={templates} sessions={paced} onSubmit={vi.fn()} />);
    expect(screen.getByTestId("pacing-hint")).toHaveTextContent("use the number's pacing: 3000–8000 ms between messages.");
  });

  it("speaks Bahasa Indonesia", () => {
    renderUi(<CampaignForm templates={templates} sessions={sessions} onSubmit={vi.fn()} />, "id");
    expect(screen.getByRole("button", { name: "Buat kampanye" })).toBeInTheDocument();
    expect(screen.getByLabelText(/Nomor telepon, satu per baris/)).toBeInTheDocument();
  });
});

describe("template form", () => {
  it("previews the message with the sample variables as it is typed", async () => {
    renderUi(<TemplateForm onCreated={vi.fn()} />);
    const user = userEvent.setup({ delay: null });
    const body = screen.getByLabelText(/^Message/);
    await user.clear(body);
    await user.type(body, "Halo {{{{ name }}, kode {{{{ code }}");
    const vars = screen.getByLabelText(/Sample variables/);
    await user.clear(vars);
    await user.type(vars, "name=Budi");
    expect(screen.getByTestId("preview-text").textContent).toBe("Halo Budi, kode {{ code }}");
  });
});
