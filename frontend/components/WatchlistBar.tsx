"use client";
// The market watch's watchlist controls: choose, create and delete lists, and add instruments
// by searching the catalog (symbol or description). The rows' remove buttons and the sortable
// headers are in MarketWatch.

import { useId, useMemo, useState } from "react";
import type { Instrument } from "@/lib/types";
import { activeSymbols, searchCatalog, type Watchlists } from "@/lib/watchlist";

export interface WatchlistBarProps {
  lists: Watchlists;
  catalog: Instrument[];
  onActivate: (name: string) => void;
  onCreate: (name: string) => void;
  onDeleteActive: () => void;
  onAdd: (symbol: string) => void;
}

export default function WatchlistBar({ lists, catalog, onActivate, onCreate, onDeleteActive, onAdd }: WatchlistBarProps) {
  const [query, setQuery] = useState("");
  const [highlight, setHighlight] = useState(0);
  const [naming, setNaming] = useState<string | null>(null);
  const listboxId = useId();
  const listed = useMemo(() => new Set(activeSymbols(lists)), [lists]);
  const matches = useMemo(() => searchCatalog(catalog, query, listed), [catalog, query, listed]);
  const current = Math.min(highlight, Math.max(0, matches.length - 1));

  const add = (symbol: string) => {
    onAdd(symbol);
    setQuery("");
    setHighlight(0);
  };

  const onSearchKey = (e: React.KeyboardEvent<HTMLInputElement>) => {
    if (e.key === "ArrowDown") setHighlight(Math.min(matches.length - 1, current + 1));
    else if (e.key === "ArrowUp") setHighlight(Math.max(0, current - 1));
    else if (e.key === "Enter" && matches[current]) add(matches[current].symbol);
    else if (e.key === "Escape") setQuery("");
    else return;
    e.preventDefault();
  };

  return (
    <div className="watchlist-bar" data-testid="watchlist-bar">
      <label className="wl-field">
        <span className="sr-only">Watchlist</span>
        <select value={lists.active} onChange={(e) => onActivate(e.target.value)} data-testid="watchlist-select" aria-label="Watchlist">
          {lists.lists.map((l) => (
            <option key={l.name} value={l.name}>
              {l.name} ({l.symbols.length})
            </option>
          ))}
        </select>
      </label>
      {naming == null ? (
        <>
          <button type="button" className="wl-button" onClick={() => setNaming("")} data-testid="watchlist-new">
            New list
          </button>
          {lists.lists.length > 1 && (
            <button type="button" className="wl-button" onClick={onDeleteActive} data-testid="watchlist-delete" aria-label={`Delete the list ${lists.active}`}>
              Delete list
            </button>
          )}
        </>
      ) : (
        <form
          className="wl-new"
          onSubmit={(e) => {
            e.preventDefault();
            if (naming.trim()) onCreate(naming);
            setNaming(null);
          }}
        >
          <input
            autoFocus
            value={naming}
            maxLength={40}
            onChange={(e) => setNaming(e.target.value)}
            onKeyDown={(e) => e.key === "Escape" && setNaming(null)}
            placeholder="List name"
            aria-label="New list name"
            data-testid="watchlist-name"
          />
          <button type="submit" className="wl-button">
            Create
          </button>
        </form>
      )}
      <div className="wl-search">
        <input
          type="search"
          role="combobox"
          aria-expanded={matches.length > 0}
          aria-controls={listboxId}
          aria-activedescendant={matches[current] ? `${listboxId}-${matches[current].symbol}` : undefined}
          aria-autocomplete="list"
          aria-label="Add an instrument: search by symbol or name"
          placeholder="Add instrument…"
          value={query}
          onChange={(e) => {
            setQuery(e.target.value);
            setHighlight(0);
          }}
          onKeyDown={onSearchKey}
          data-testid="watchlist-search"
        />
        {matches.length > 0 && (
          <ul id={listboxId} role="listbox" className="wl-matches" aria-label="Matching instruments">
            {matches.map((i, n) => (
              <li
                key={i.symbol}
                id={`${listboxId}-${i.symbol}`}
                role="option"
                aria-selected={n === current}
                className={n === current ? "active" : ""}
                onMouseDown={(e) => {
                  e.preventDefault(); // keep the focus in the search box
                  add(i.symbol);
                }}
                data-match={i.symbol}
              >
                <b>{i.symbol}</b> <span className="muted">{i.description}</span>
              </li>
            ))}
          </ul>
        )}
      </div>
    </div>
  );
}
