import { useCallback, useEffect, useState } from "react";

/** Loads with `load` (again when `deps` change or `reload()` is called). */
export function useData<T>(load: () => Promise<T>, deps: unknown[] = []) {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    load().then(
      (d) => live && (setData(d), setError(null)),
      (e) => live && setError(e),
    );
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, setData, error, reload };
}

/**
 * Runs `f` now and twice more shortly after: a notification can arrive before the read model
 * the screen reads has applied the same event (each projector has its own pace).
 */
export function soonAndAgain(f: () => void, delays: number[] = [0, 500, 2000]): void {
  for (const d of delays) setTimeout(f, d);
}

/** `f` at most once per `ms`, the last call always honoured (trailing). */
export function throttle(f: () => void, ms: number): () => void {
  let last = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  return () => {
    const wait = last + ms - Date.now();
    if (wait <= 0) {
      last = Date.now();
      f();
    } else if (!timer) {
      timer = setTimeout(() => {
        timer = undefined;
        last = Date.now();
        f();
      }, wait);
    }
  };
}
