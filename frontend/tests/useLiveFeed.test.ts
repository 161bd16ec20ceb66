// @vitest-environment happy-dom
import { act, createElement, Profiler } from "react";
import { createRoot, type Root } from "react-dom/client";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { useLiveFeed } from "@/lib/useLiveFeed";
import type { LiveFeedOptions } from "@/lib/liveFeed";
import { FakeSocket, fakeRaf, fillUpdate, inst, instUpdate, snapshot } from "./helpers";
import { mountPoint, removeMountPoint } from "./componentHelpers";

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

let root: Root;
let container: HTMLElement;
let renders = 0;
let commits = 0;
let latest: ReturnType<typeof useLiveFeed> | null = null;

function Probe({ options }: { options: LiveFeedOptions }) {
  renders++;
  latest = useLiveFeed(options);
  const es = latest.view.data.instruments.find((s) => s.symbol === "ESZ6");
  return createElement("div", { id: "probe", "data-conn": latest.view.conn }, `${es?.seq}:${es?.bid}`);
}

function mount(options: LiveFeedOptions) {
  act(() => {
    root.render(
      createElement(Profiler, { id: "feed", onRender: () => commits++ }, createElement(Probe, { options })),
    );
  });
}

/** What the probe shows of the connection (`view.conn`). */
const connState = () => container.querySelector("#probe")?.getAttribute("data-conn");

/** Mounts the hook on a FakeSocket and manual frames; `ws` is the socket it opened. */
function mountOnFakes(over: Partial<LiveFeedOptions> = {}) {
  const frames = fakeRaf();
  mount({ url: "ws://x/ws", initial: snapshot(), socketFactory: FakeSocket.factory, raf: frames.raf, caf: frames.caf, ...over });
  return { frames, ws: FakeSocket.last() };
}

/** The server's side of going live: the socket opens and the snapshot arrives. */
function openWithSnapshot(ws: FakeSocket) {
  ws.open();
  ws.receive({ type: "snapshot", v: 1, ...snapshot() });
}

beforeEach(() => {
  FakeSocket.reset();
  vi.useFakeTimers();
  ({ container, root } = mountPoint());
  renders = 0;
  commits = 0;
  latest = null;
});

afterEach(() => {
  removeMountPoint({ container, root });
  vi.useRealTimers();
});

describe("useLiveFeed", () => {
  it("renders the initial snapshot, opens the socket and subscribes", () => {
    const { ws } = mountOnFakes();
    expect(container.textContent).toBe("5:100.00");
    expect(FakeSocket.instances.length).toBe(1);
    act(() => ws.open());
    expect(FakeSocket.last().subscribes()).toBe(1);
  });

  it("commits once per animation frame however many updates arrive", () => {
    const { frames, ws } = mountOnFakes();
    act(() => openWithSnapshot(ws));
    act(() => {
      frames.frame();
    });
    expect(connState()).toBe("live");
    const rendersBefore = renders;
    const commitsBefore = commits;

    // 1000 updates within one frame: no render until the frame, then exactly one.
    act(() => {
      for (let i = 0; i < 1000; i++) ws.receive(instUpdate(inst("ESZ6", 10 + i, { bid: `${100 + i}.25` })));
    });
    expect(renders).toBe(rendersBefore);
    expect(commits).toBe(commitsBefore);
    act(() => {
      frames.frame();
    });
    expect(renders).toBe(rendersBefore + 1);
    expect(commits).toBe(commitsBefore + 1);
    expect(container.textContent).toBe("1009:1099.25");

    // A frame with nothing new commits nothing.
    act(() => {
      frames.frame();
    });
    expect(commits).toBe(commitsBefore + 1);
  });

  it("shows disconnected when the socket drops and recovers with a fresh snapshot", () => {
    const { frames, ws } = mountOnFakes({ random: () => 0 });
    act(() => {
      openWithSnapshot(ws);
      frames.frame();
    });
    act(() => {
      ws.serverClose(1006);
      frames.frame();
    });
    expect(connState()).toBe("disconnected");
    act(() => {
      vi.advanceTimersByTime(200);
    });
    const next = FakeSocket.last();
    expect(next).not.toBe(ws);
    act(() => {
      next.open();
      next.receive({ type: "snapshot", v: 1, ...snapshot({ instruments: [inst("ESZ6", 42, { bid: "123.50" })] }) });
      frames.frame();
    });
    expect(connState()).toBe("live");
    expect(container.textContent).toBe("42:123.50");
  });

  it("a fill gap asks for a snapshot on the same socket", () => {
    const { frames, ws } = mountOnFakes();
    act(() => {
      openWithSnapshot(ws);
      ws.receive(fillUpdate("ACC1", 6)); // expected 5
      frames.frame();
    });
    expect(ws.subscribes()).toBe(2);
    expect(latest?.view.resnapshots).toBe(1);
    expect(connState()).toBe("stale");
  });

  it("closes the socket on unmount", () => {
    const { ws } = mountOnFakes();
    act(() => ws.open());
    act(() => root.unmount());
    expect(ws.closedWith).toBe(1000);
    root = createRoot(container); // for afterEach
  });
});
