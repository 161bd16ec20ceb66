"use client";
// React binding of LiveFeed: one feed per component instance, started on mount and stopped on
// unmount. The store lives outside React; React sees an immutable view that the feed publishes
// at most once per animation frame, however fast updates arrive.

import { useEffect, useState, useSyncExternalStore } from "react";
import { LiveFeed, type FeedView, type LiveFeedOptions } from "./liveFeed";

export type { ConnState, FeedView } from "./liveFeed";

export interface LiveFeedHandle {
  view: FeedView;
  feed: LiveFeed;
}

/** Options are read once, when the component mounts. */
export function useLiveFeed(options: LiveFeedOptions): LiveFeedHandle {
  const [feed] = useState(() => new LiveFeed(options));
  useEffect(() => {
    feed.start();
    return () => feed.stop();
  }, [feed]);
  const view = useSyncExternalStore(feed.subscribe, feed.getView, feed.getServerView);
  return { view, feed };
}
