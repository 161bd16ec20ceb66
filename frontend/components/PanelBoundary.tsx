"use client";
// One panel's error boundary: a value the panel cannot render (a malformed number from an
// older or broken server, a bug) blanks that panel only, says what failed, and offers to try
// again; the rest of the screen keeps updating.

import { Component, type ReactNode } from "react";

interface Props {
  name: string;
  children: ReactNode;
}

interface State {
  error: Error | null;
}

export default class PanelBoundary extends Component<Props, State> {
  state: State = { error: null };

  static getDerivedStateFromError(error: unknown): State {
    return { error: error instanceof Error ? error : new Error(String(error)) };
  }

  componentDidCatch(error: unknown): void {
    console.warn(`ttpulse: the ${this.props.name} panel failed to render`, error);
  }

  render() {
    const { error } = this.state;
    if (!error) return this.props.children;
    return (
      <div className="panel-error" role="alert" data-testid="panel-error">
        <p>
          The {this.props.name} panel could not show the latest data: {error.message}
        </p>
        <button type="button" className="banner-action" onClick={() => this.setState({ error: null })}>
          Try again
        </button>
      </div>
    );
  }
}
