import type { Metadata } from "next";
import OpsView from "@/components/OpsView";

export const metadata: Metadata = { title: "ttpulse · operations" };

export default function OpsPage() {
  return <OpsView />;
}
