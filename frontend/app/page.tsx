// The dashboard. A server component: it reads the current snapshot from the ttpulse API at
// request time and renders the market watch and positions with it, so the prices are in the
// first HTML; the client component then hydrates with the same snapshot and goes live.

import Dashboard from "@/components/Dashboard";
import SignIn from "@/components/SignIn";
import { loadInitialData } from "@/lib/server";

export const dynamic = "force-dynamic";

export default async function Page() {
  const { snapshot, fills, catalog, error, signInRequired, signedIn } = await loadInitialData();
  if (signInRequired) return <SignIn />;
  // For `make run` without nginx the page (:3000) and the WebSocket (:8080) differ; behind
  // nginx this is unset and the browser uses its own origin's /ws.
  const wsUrl = process.env.TTPULSE_PUBLIC_WS_URL || null;
  return (
    <Dashboard
      initial={snapshot}
      initialFills={fills}
      catalog={catalog}
      wsUrl={wsUrl}
      serverNow={Date.now()}
      apiError={error}
      signedIn={signedIn}
    />
  );
}
