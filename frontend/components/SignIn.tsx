// The page a visitor without a (valid) token gets when ttpulse requires one: no data at all,
// and how to sign in. The token itself is set by the sign-in proxy in front of the dashboard
// (oauth2-proxy or any OIDC front): the `ttpulse_token` cookie (HttpOnly, Secure) or an
// `Authorization: Bearer` header on every request.

export default function SignIn() {
  return (
    <div className="app signin" data-testid="sign-in">
      <main className="layout">
        <section className="panel" aria-labelledby="h-signin">
          <div className="panel-head">
            <h2 id="h-signin">Sign in required</h2>
          </div>
          <p>
            This dashboard shows account data only to signed-in users. Sign in through your desk&apos;s sign-in page;
            it gives your browser a token for the accounts you may see.
          </p>
          <p className="muted">
            No token reached this page, or the one that did was refused (expired, or not signed by a key this server
            trusts).
          </p>
        </section>
      </main>
    </div>
  );
}
