// loopml's bundled development OIDC provider (npm `oidc-provider`), for `loopml up` when no
// identity provider is configured. NOT FOR PRODUCTION: it listens on 127.0.0.1 only, keeps
// everything in memory, and its users and passwords come from a JSON file
// (hub_config/dev_users.json by default; see docs/hub.md).
//
// Configuration, from the environment (set by `loopml up`):
//   LOOPML_IDP_PORT           port on 127.0.0.1
//   LOOPML_IDP_CLIENT_ID      the one client (JupyterHub)
//   LOOPML_IDP_CLIENT_SECRET
//   LOOPML_IDP_REDIRECT_URI   JupyterHub's OAuth callback
//   LOOPML_IDP_USERS          path of the users file: {"alice": {"password", "name", "email", "groups"}}
//   LOOPML_IDP_COOKIE_KEY     key signing the provider's cookies
//
// Sign-in checks the password; the one client is first-party, so consent is granted without
// asking. The userinfo endpoint is /me and carries `groups` (under the `profile` scope).
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { timingSafeEqual, createHash } from 'node:crypto';
import Provider from 'oidc-provider';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`dev_idp: ${name} is not set`);
    process.exit(2);
  }
  return value;
};

const port = Number(env('LOOPML_IDP_PORT'));
const issuer = `http://127.0.0.1:${port}`;
const users = JSON.parse(readFileSync(env('LOOPML_IDP_USERS'), 'utf8'));
const clientId = env('LOOPML_IDP_CLIENT_ID');

const digest = (text) => createHash('sha256').update(String(text)).digest();
const passwordMatches = (user, password) => timingSafeEqual(digest(user.password), digest(password));
const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: env('LOOPML_IDP_CLIENT_SECRET'),
    redirect_uris: [env('LOOPML_IDP_REDIRECT_URI')],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  cookies: { keys: [env('LOOPML_IDP_COOKIE_KEY')] },
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name', 'groups'],
    email: ['email'],
  },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  routes: { userinfo: '/me' },
  async findAccount(ctx, id) {
    const user = users[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: id, preferred_username: id, name: user.name || id,
          email: user.email || `${id}@example.invalid`, groups: user.groups || [],
        };
      },
    };
  },
  async loadExistingGrant(ctx) {
    // First-party client: grant what it asks for, no consent screen.
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope(ctx.oidc.requestParamScopes ? [...ctx.oidc.requestParamScopes].join(' ') : 'openid');
    grant.addOIDCClaims(['preferred_username', 'name', 'email', 'groups']);
    await grant.save();
    return grant;
  },
  ttl: { AccessToken: 3600, AuthorizationCode: 60, IdToken: 3600, Interaction: 600, Session: 3600, Grant: 3600 },
});
provider.proxy = false;

function page(res, status, body) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html><head><meta charset="utf-8"><title>loopml dev sign-in</title></head>
<body style="font-family: sans-serif; max-width: 28em; margin: 3em auto">
<p style="background:#fde2e1;padding:.5em"><b>Development identity provider.</b> Not for production use.</p>
${body}</body></html>`);
}

function form(uid, message = '') {
  return `<h1>Sign in to loopml</h1>${message ? `<p role="alert" style="color:#b00">${escape(message)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">
<p><label>User name <input name="login" id="login" required autofocus></label></p>
<p><label>Password <input name="password" id="password" type="password" required></label></p>
<p><button type="submit" id="sign-in">Sign in</button></p></form>`;
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 10000) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

const oidc = provider.callback();
const server = createServer(async (req, res) => {
  const match = /^\/interaction\/([\w-]+)(\/login)?$/.exec(new URL(req.url, issuer).pathname);
  if (!match) return oidc(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== match[1]) return page(res, 400, '<p>This sign-in page has expired: start again.</p>');
    if (!match[2]) return page(res, 200, form(details.uid));
    if (req.method !== 'POST') return page(res, 405, '<p>Use the sign-in form.</p>');
    const fields = await readForm(req);
    const login = fields.get('login') || '';
    const user = Object.hasOwn(users, login) ? users[login] : undefined;
    if (!user || !passwordMatches(user, fields.get('password') || '')) {
      return page(res, 401, form(details.uid, 'Unknown user name or wrong password.'));
    }
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
  } catch (error) {
    page(res, 400, `<p>Sign-in failed: ${escape(error.message)}. Start again from the hub's login page.</p>`);
  }
});

server.listen(port, '127.0.0.1', () => {
  console.log(`loopml dev OIDC provider (NOT FOR PRODUCTION) listening on ${issuer}, ${Object.keys(users).length} demo users`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
