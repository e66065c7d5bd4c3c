/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The built app is served by `herald serve` from web/dist (HERALD_WEB_DIR); `npm run dev`
// proxies the API to a Herald on 127.0.0.1:8080.
export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
  server: {
    proxy: {
      "/api": "http://127.0.0.1:8080",
    },
  },
  test: {
    environment: "jsdom",
    setupFiles: ["src/test-setup.ts"],
    include: ["src/**/*.test.{ts,tsx}"],
    // a shared, busy CI machine: typing into jsdom can be slow
    testTimeout: 30_000,
  },
});
