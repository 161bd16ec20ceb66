import { describe, expect, it, vi } from "vitest";
import { BlotterFeed, RECOVER_WAIT_MS, REFILL_PAGE } from "@/lib/blotterFeed";
import { fakeRaf, fakeSocketsAndTimersPerTest, fillUpdate, openLastSocket, snapshot } from "./helpers";
import { fakeApi, heldFills, laneSnapshot, setupBlotter as setup, stored } from "./blotterHelpers";

const seqs = (b: BlotterFeed) => b.blotter.view().rows.map((r) => r.seq);
const flush = () => vi.advanceTimersByTimeAsync(0);

fakeSocketsAndTimersPerTest();

describe("BlotterFeed", () => {
  it("resumes on reconnect with the seq it holds and takes the recovered fills once, in order", async () => {
    const api = fakeApi(() => 4);
    const { blotter, ws: firstWs, stop } = setup(heldFills([4, 3, 2, 1]), api);
    let ws = firstWs;
    expect(JSON.parse(ws.sent[0]).recover).toEqual({ "fills:ACC1:ESZ6": 4 });
    ws.receive(laneSnapshot(4));
    ws.receive(fillUpdate("ACC1", 5));
    expect(seqs(blotter)).toEqual([5, 4, 3, 2, 1]);

    // The network drops; fills 6..8 happen meanwhile.
    ws.serverClose(1006);
    await vi.advanceTimersByTimeAsync(1000);
    ws = openLastSocket();
    expect(JSON.parse(ws.sent[0]).recover).toEqual({ "fills:ACC1:ESZ6": 5 });
    ws.receive(laneSnapshot(8));
    expect(blotter.getView().refilling).toBe(0); // not published yet
    ws.receive({
      type: "recovered",
      v: 1,
      lanes: [{ key: "fills:ACC1:ESZ6", from: 5, to: 8, recovered: true, fills: [6, 7, 8].map((s) => stored("ACC1", s)) }],
    });
    ws.receive(fillUpdate("ACC1", 9));
    ws.receive(fillUpdate("ACC1", 9)); // a duplicate changes nothing
    expect(seqs(blotter)).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1]);
    await vi.advanceTimersByTimeAsync(RECOVER_WAIT_MS + 10);
    expect(api.paths).toEqual([]); // nothing had to be read over HTTP
    stop();
  });

  it("reads a lane the server would not recover over HTTP, and live fills meanwhile are kept", async () => {
    let stored_ = 3;
    const api = fakeApi(() => stored_);
    const { blotter, ws, stop } = setup(heldFills([1]), api);
    stored_ = 1200;
    ws.receive(laneSnapshot(1200));
    ws.receive({ type: "recovered", v: 1, lanes: [{ key: "fills:ACC1:ESZ6", from: 1, to: 1200, recovered: false, reason: "too many" }] });
    ws.receive(fillUpdate("ACC1", 1201)); // arrives while the hole is read
    stored_ = 1201;
    await flush();
    await flush();
    await flush();
    expect(api.paths[0]).toBe(`/api/fills?account=ACC1&symbol=ESZ6&since_seq=1&limit=${REFILL_PAGE}`);
    expect(api.paths.length).toBe(3); // 500 + 500 + 201 (the last one short)
    expect(blotter.blotter.laneSeq("fills:ACC1:ESZ6")).toBe(1201);
    expect(seqs(blotter)).toEqual(Array.from({ length: 1201 }, (_, i) => 1201 - i));
    stop();
  });

  it("after an account-lane gap, the resubscribe's recover fills the hole", async () => {
    const api = fakeApi(() => 8);
    const { blotter, ws, stop } = setup(heldFills([4]), api);
    ws.receive(laneSnapshot(4));
    ws.receive(fillUpdate("ACC1", 5));
    ws.receive(fillUpdate("ACC1", 7)); // 6 lost: the feed subscribes again, recovering from 5
    const resubscribe = JSON.parse(ws.sent[ws.sent.length - 1]);
    expect(resubscribe.recover).toEqual({ "fills:ACC1:ESZ6": 5 });
    ws.receive(laneSnapshot(7));
    ws.receive({ type: "recovered", v: 1, lanes: [{ key: "fills:ACC1:ESZ6", from: 5, to: 7, recovered: true, fills: [6, 7].map((s) => stored("ACC1", s)) }] });
    expect(seqs(blotter)).toEqual([7, 6, 5, 4]);
    stop();
  });

  it("a recover the server never answers is read over HTTP after a while", async () => {
    const api = fakeApi(() => 6);
    const { blotter, ws, stop } = setup(heldFills([4]), api);
    ws.receive(laneSnapshot(6));
    await vi.advanceTimersByTimeAsync(RECOVER_WAIT_MS - 100);
    expect(api.paths).toEqual([]);
    await vi.advanceTimersByTimeAsync(200);
    expect(api.paths).toEqual([`/api/fills?account=ACC1&symbol=ESZ6&since_seq=4&limit=${REFILL_PAGE}`]);
    expect(seqs(blotter)).toEqual([6, 5, 4]);
    stop();
  });

  it("a page the server rendered without reads the first page after the snapshot; failures are shown and retried", async () => {
    let down = true;
    const api = fakeApi(() => 3, () => down);
    const { blotter, frames, ws, stop } = setup(null, api);
    ws.receive(laneSnapshot(3));
    await flush();
    frames.frame();
    expect(api.paths).toEqual(["/api/fills?account=ACC1&limit=100"]);
    expect(blotter.getView().error).toMatch(/could not read the fills of ACC1: HTTP 503/);
    down = false;
    await vi.advanceTimersByTimeAsync(300);
    frames.frame();
    expect(api.paths.length).toBe(2);
    expect(blotter.getView().error).toBeNull();
    expect(blotter.getView().rows.map((r) => r.seq)).toEqual([3, 2, 1]);
    // The lane is complete up to the snapshot: the next live fill extends it.
    ws.receive(fillUpdate("ACC1", 4));
    expect(blotter.blotter.laneSeq("fills:ACC1:ESZ6")).toBe(4);
    stop();
  });

  it("load more reads the next page of every account that has one", async () => {
    const paths: string[] = [];
    const fetchJson = async (path: string) => {
      paths.push(path);
      return { fills: [stored("ACC1", 1)], next: null };
    };
    const frames = fakeRaf();
    const b = new BlotterFeed({ pages: { ACC1: { fills: [stored("ACC1", 2)], next: "ts:ESZ6:2" }, ACC2: { fills: [], next: null } }, lanes: {} }, { fetchJson, raf: frames.raf, caf: frames.caf });
    expect(b.getView().more).toBe(true);
    await b.loadMore();
    frames.frame();
    expect(paths).toEqual(["/api/fills?account=ACC1&cursor=ts%3AESZ6%3A2&limit=100"]);
    expect(b.getView().rows.map((r) => r.seq)).toEqual([2, 1]);
    expect(b.getView().more).toBe(false);
  });
});
