// What the component tests (happy-dom) render on: a <div> in the document with a React root on
// it and, for the panels that read the live feed, a started LiveFeed on a FakeSocket whose
// frames (the page's requestAnimationFrame too) run only when the test says so.

import { act } from "react";
import { createRoot, type Root } from "react-dom/client";
import { vi } from "vitest";
import { LiveFeed, type LiveFeedOptions } from "@/lib/liveFeed";
import { FakeSocket, fakeRaf } from "./helpers";

export interface MountPoint {
  container: HTMLElement;
  root: Root;
}

/** A fresh <div> in the document and a React root on it. */
export function mountPoint(): MountPoint {
  const container = document.createElement("div");
  document.body.appendChild(container);
  return { container, root: createRoot(container) };
}

/** Unmounts first (effects clean up while their nodes are still in the document), then removes the <div>. */
export function removeMountPoint({ container, root }: MountPoint) {
  act(() => root.unmount());
  container.remove();
}

export interface FeedFixture extends MountPoint {
  frames: ReturnType<typeof fakeRaf>;
  feed: LiveFeed;
}

/**
 * A mount point and a started feed. Fake timers, when a test wants them, go on before: the feed
 * starts its timers here.
 */
export function feedFixture(options: Partial<LiveFeedOptions> = {}): FeedFixture {
  FakeSocket.reset();
  const frames = fakeRaf();
  vi.stubGlobal("requestAnimationFrame", frames.raf);
  vi.stubGlobal("cancelAnimationFrame", frames.caf);
  const feed = new LiveFeed({ url: "ws://x/ws", socketFactory: FakeSocket.factory, raf: frames.raf, caf: frames.caf, ...options });
  feed.start();
  return { ...mountPoint(), frames, feed };
}

/** Takes a feedFixture down: the mount point, the feed, and every global a test stubbed. */
export function removeFeedFixture({ container, root, feed }: Pick<FeedFixture, "container" | "root" | "feed">) {
  removeMountPoint({ container, root });
  feed.stop();
  vi.unstubAllGlobals();
}
