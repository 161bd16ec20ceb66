// The diesel table definitions; they match migrations/ (regenerate with `diesel print-schema`).

diesel::table! {
    instruments (symbol) {
        symbol -> Text,
        description -> Text,
        tick_size -> Text,
        multiplier -> Text,
    }
}

diesel::table! {
    trades (symbol, event_id) {
        event_id -> Text,
        symbol -> Text,
        price -> Text,
        qty -> BigInt,
        aggressor -> Text,
        ts -> BigInt,
        ingest_ts -> BigInt,
    }
}

diesel::table! {
    fills (account, symbol, fill_id) {
        fill_id -> Text,
        event_id -> Text,
        account -> Text,
        account_seq -> BigInt,
        order_id -> Text,
        symbol -> Text,
        side -> Text,
        price -> Text,
        qty -> BigInt,
        ts -> BigInt,
    }
}

diesel::table! {
    pnl_samples (account, period, start_ts) {
        account -> Text,
        period -> Text,
        start_ts -> BigInt,
        realized -> Text,
        unrealized -> Text,
        sampled_at -> BigInt,
    }
}

diesel::table! {
    candles (symbol, period, start_ts) {
        symbol -> Text,
        period -> Text,
        start_ts -> BigInt,
        open -> Text,
        high -> Text,
        low -> Text,
        close -> Text,
        volume -> BigInt,
        trades -> BigInt,
        seq -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    instrument_states (symbol) {
        symbol -> Text,
        seq -> BigInt,
        bid -> Nullable<Text>,
        ask -> Nullable<Text>,
        last -> Nullable<Text>,
        open -> Nullable<Text>,
        high -> Nullable<Text>,
        low -> Nullable<Text>,
        volume -> BigInt,
        notional -> Text,
        trades -> BigInt,
        updated_at -> BigInt,
        bid_qty -> BigInt,
        ask_qty -> BigInt,
    }
}

diesel::table! {
    positions (account, symbol) {
        account -> Text,
        symbol -> Text,
        seq -> BigInt,
        net_qty -> BigInt,
        avg_price -> Text,
        realized_pnl -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    event_watermarks (source, instrument) {
        source -> Text,
        instrument -> Text,
        last_seq -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    instruments,
    trades,
    fills,
    candles,
    instrument_states,
    positions,
    event_watermarks,
    pnl_samples,
);
