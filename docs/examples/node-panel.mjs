// A tiny Node "panel" that embeds the webhooks admin pages in its own layout
// and raises events — no dependencies, Node 20+ (it uses fetch and
// Headers.getSetCookie). See docs/EMBEDDING.md, "Try it".
//
// With `cargo run -p webhooks-host -- serve` running in another terminal:
//
//   WEBHOOKS_URL=http://127.0.0.1:8080 WEBHOOKS_API_TOKEN="$(cat data/api-token)" \
//     node docs/examples/node-panel.mjs
//
// then open http://127.0.0.1:3000/ (it leads to Admin → Integrations →
// Webhooks, http://127.0.0.1:3000/admin/integrations/webhooks). Set PORT to
// listen elsewhere.
//
// What a real panel does the same way:
//   * its own sign-in decides who the admin is (here: everyone is "alice");
//   * its own CSRF token protects every POST (here: `_token`, as in Laravel);
//   * it forwards /admin/integrations/webhooks/* to webhooks-host with the API
//     token, the acting admin and its CSRF token, asks for the fragment only,
//     and wraps the answer in its layout;
//   * it raises events with POST /api/events when something happens.
import http from "node:http";
import crypto from "node:crypto";

const HOOKS = process.env.WEBHOOKS_URL ?? "http://127.0.0.1:8080";
const TOKEN = process.env.WEBHOOKS_API_TOKEN;
const MOUNT = "/admin/integrations/webhooks";
if (!TOKEN) throw new Error("set WEBHOOKS_API_TOKEN");

// The panel's sessions: session id -> { user, csrf }.
const sessions = new Map();

function session(req, res) {
  const sid = /(?:^|;\s*)panel_session=([a-f0-9]{32})/.exec(req.headers.cookie ?? "")?.[1];
  if (sid && sessions.has(sid)) return sessions.get(sid);
  const id = crypto.randomBytes(16).toString("hex");
  const s = { user: "alice", csrf: crypto.randomBytes(20).toString("hex") };
  sessions.set(id, s);
  res.setHeader("set-cookie", `panel_session=${id}; Path=/; HttpOnly; SameSite=Lax`);
  return s;
}

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks);
}

function layout(title, fragment) {
  const esc = (s) => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)} · Acme Panel</title>
<link rel="stylesheet" href="/static/webhooks.css"><script src="/static/webhooks.js" defer></script></head>
<body><header class="acme">Acme Panel</header><nav><a href="${MOUNT}">Integrations → Webhooks</a></nav>
<main>${fragment}</main></body></html>`;
}

// Raising an event: one POST, answered as soon as it is committed.
export async function raise(type, data, id) {
  const r = await fetch(`${HOOKS}/api/events`, {
    method: "POST",
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify({ type, data, id }),
  });
  if (r.status !== 202) throw new Error(`raising ${type}: ${r.status} ${await r.text()}`);
  return r.json(); // { id, queued }
}

// The browser's `wh_flash` cookie, if any, as `wh_flash=<value>`.
function flashCookie(req) {
  const v = /(?:^|;\s*)wh_flash=([^;]*)/.exec(req.headers.cookie ?? "")?.[1];
  return v ? `wh_flash=${v}` : "";
}

async function proxyAdmin(req, res, s) {
  const body = req.method === "POST" ? await readBody(req) : undefined;
  if (body) {
    // The panel's own CSRF check, before anything is forwarded.
    const token = new URLSearchParams(body.toString()).get("_token");
    if (token !== s.csrf) {
      res.writeHead(419, { "content-type": "text/plain" });
      return res.end("Page expired (CSRF token mismatch).");
    }
  }
  const upstream = await fetch(HOOKS + req.url, {
    method: req.method,
    redirect: "manual",
    body,
    headers: {
      authorization: `Bearer ${TOKEN}`,
      "x-webhooks-actor": s.user,
      "x-webhooks-csrf-token": s.csrf,
      "x-webhooks-csrf-field": "_token",
      "x-webhooks-fragment": "1",
      "content-type": req.headers["content-type"] ?? "application/x-www-form-urlencoded",
      // The flash message of the page before travels in a cookie of its own;
      // only that one is passed on, as the browser sent it (still encoded).
      // The panel's own cookies (its session) never leave the panel.
      cookie: flashCookie(req),
    },
  });
  for (const c of upstream.headers.getSetCookie()) res.appendHeader("set-cookie", c);
  if (upstream.status >= 300 && upstream.status < 400) {
    res.writeHead(upstream.status, { location: upstream.headers.get("location") });
    return res.end();
  }
  const title = decodeURIComponent(upstream.headers.get("x-webhooks-title") ?? "Webhooks");
  const html = layout(title, await upstream.text());
  res.writeHead(upstream.status, { "content-type": "text/html; charset=utf-8" });
  res.end(html);
}

const server = http.createServer(async (req, res) => {
  try {
    const s = session(req, res);
    const path = new URL(req.url, "http://panel").pathname;
    if (path === "/") {
      res.writeHead(302, { location: MOUNT });
      return res.end();
    }
    if (path === MOUNT || path.startsWith(MOUNT + "/")) return await proxyAdmin(req, res, s);
    if (path === "/static/webhooks.css" || path === "/static/webhooks.js") {
      const r = await fetch(HOOKS + path);
      res.writeHead(r.status, { "content-type": r.headers.get("content-type") });
      return res.end(Buffer.from(await r.arrayBuffer()));
    }
    if (path === "/signup" && req.method === "POST") {
      // Somewhere in the panel, a user signs up…
      const user = JSON.parse((await readBody(req)).toString());
      const raised = await raise("user.created", user, `user-${user.id}-created`);
      res.writeHead(200, { "content-type": "application/json" });
      return res.end(JSON.stringify(raised));
    }
    res.writeHead(404).end("not found");
  } catch (e) {
    res.writeHead(502, { "content-type": "text/plain" }).end(String(e));
  }
});

server.listen(Number(process.env.PORT ?? 3000), "127.0.0.1", () => {
  console.log(`panel listening on http://127.0.0.1:${server.address().port}`);
});
