// Wire types of the ttpulse back end (see docs/protocol.md, "HTTP API" and "WebSocket
// protocol"). Prices and money are decimal strings, never floats; times are Unix microseconds.

/** A decimal number as the server printed it, e.g. "6850.25" or "-0.0036". */
export type Dec = string;
export type Micros = number;

export interface InstrumentState {
  symbol: string;
  seq: number;
  bid: Dec | null;
  /** Size of the bid shown (contracts), 0 when none; absent from older servers. */
  bid_qty?: number;
  ask: Dec | null;
  /** Size of the ask shown (contracts), 0 when none; absent from older servers. */
  ask_qty?: number;
  mid: Dec | null;
  spread: Dec | null;
  last: Dec | null;
  open: Dec | null;
  high: Dec | null;
  low: Dec | null;
  change: Dec | null;
  /** Already in percent: "0.0036" means 0.0036 %. */
  change_pct: Dec | null;
  volume: number;
  vwap: Dec | null;
  trades: number;
  /** Exchange time of the last change. */
  updated_at: Micros;
}

export type Interval = "1s" | "1m";

export interface Candle {
  symbol: string;
  interval: Interval;
  start: Micros;
  open: Dec;
  high: Dec;
  low: Dec;
  close: Dec;
  volume: number;
  trades: number;
  seq: number;
  updated_at: Micros;
}

export interface PositionState {
  account: string;
  symbol: string;
  seq: number;
  net_qty: number;
  avg_price: Dec;
  realized_pnl: Dec;
  unrealized_pnl: Dec;
  updated_at: Micros;
}

/**
 * Where a fill lane stands: the seq of its last fill. The lane is (account, symbol), key
 * `fills:<account>:<symbol>`; a server without `symbol` here has one lane per account
 * (`fills:<account>`).
 */
export interface AccountSeq {
  account: string;
  symbol?: string;
  fill_seq: number;
}

export interface Snapshot {
  instruments: InstrumentState[];
  candles: Candle[];
  positions: PositionState[];
  accounts: AccountSeq[];
}

export interface FillReport {
  account: string;
  seq: number;
  fill_id: string;
  order_id: string;
  symbol: string;
  side: "buy" | "sell";
  price: Dec;
  qty: number;
  ts: Micros;
  position: PositionState;
}

/** A print (time and sales): a `trade` update's data and a row of GET /api/trades. */
export interface TradePrint {
  symbol: string;
  /** The instrument's trade count with this print (absent from GET /api/trades rows). */
  seq?: number;
  event_id: string;
  price: Dec;
  qty: number;
  aggressor: "buy" | "sell";
  ts: Micros;
}

/** An account's P&L sample: a `pnl` update's data and a row of GET /api/pnl. */
export interface PnlPoint {
  account: string;
  interval: Interval;
  /** Bucket start. */
  start: Micros;
  realized: Dec;
  unrealized: Dec;
  total: Dec;
  /** Sample time in Unix seconds: grows with every sample of the key. */
  seq: number;
}

/** A catalog entry from GET /api/instruments. */
/**
 * How traders write an instrument's prices (display only: prices stay decimal strings):
 * plain decimals, bond futures' handle and 32nds ("112-16+"), or grains' cents and eighths
 * ("445'2").
 */
export type PriceFormat = "decimal" | "thirty_seconds" | "eighths";

export interface Instrument {
  symbol: string;
  description: string;
  tick_size: Dec;
  multiplier: Dec;
  /** Absent from an older server: then "decimal". */
  price_format?: PriceFormat;
}

interface UpdateHeader {
  type: "update";
  v: number;
  key: string;
  seq: number;
  /** When the raw event entered ttpulse (Unix µs); 0 for restored state. */
  ingest_ts: Micros;
  /** When it left the processor and when a cache took it (absent for restored state). */
  hops?: { processed: Micros; cached: Micros };
}

export type UpdateMessage =
  | (UpdateHeader & { kind: "instrument"; data: InstrumentState })
  | (UpdateHeader & { kind: "candle"; data: Candle })
  | (UpdateHeader & { kind: "position"; data: PositionState })
  | (UpdateHeader & { kind: "fill"; data: FillReport })
  | (UpdateHeader & { kind: "trade"; data: TradePrint })
  | (UpdateHeader & { kind: "pnl"; data: PnlPoint });

export type SnapshotMessage = Snapshot & { type: "snapshot"; v: number };

/** A fill as GET /api/fills and a `recovered` lane give it (no position; its event id). */
export type StoredFill = Omit<FillReport, "position"> & { event_id?: string };

/** One lane of a `recovered` message: the fills after `from` up to `to`, oldest first. */
export interface RecoveredLane {
  key: string;
  from: number;
  to: number;
  recovered: boolean;
  /** Why not, when `recovered` is false. */
  reason?: string;
  fills?: StoredFill[];
}

/** Wire version 2 (subprotocol `ttpulse.v2`): the updates of one server wake, in order. */
export interface BatchMessage {
  type: "batch";
  v: number;
  updates: UpdateMessage[];
}

export type ServerMessage =
  | SnapshotMessage
  | UpdateMessage
  | BatchMessage
  | { type: "recovered"; v: number; lanes: RecoveredLane[] }
  /** `server_ts`: the server's clock (Unix µs) when it answered; absent from older servers. */
  | { type: "pong"; server_ts?: Micros }
  | { type: "error"; code: string; message: string };

/** A row of GET /admin/actors. */
export interface ActorRow {
  name: string;
  kind: string;
  state: string;
  restarts: number;
  messages_handled: number;
  queue_depth: number;
  last_message_at: Micros | null;
  detail: string | null;
}

export const EMPTY_SNAPSHOT: Snapshot = { instruments: [], candles: [], positions: [], accounts: [] };
