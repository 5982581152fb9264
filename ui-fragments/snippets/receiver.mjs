// Verifies the deliveries of https://example.com/webhooks with the official
// Standard Webhooks library:  npm install standardwebhooks
// WEBHOOK_SECRET is this webhook's signing secret (whsec_…), the one saved on
// its Edit page. It is never shown again: if it is lost, rotate it there.
// Run:  WEBHOOK_SECRET=whsec_… PORT=8000 node receiver.mjs
import http from "node:http";
import { Webhook } from "standardwebhooks";

const webhook = new Webhook(process.env.WEBHOOK_SECRET);

const server = http.createServer(async (req, res) => {
  // Verify the raw bytes, before any JSON parsing.
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = Buffer.concat(chunks).toString("utf8");
  let event;
  try {
    event = webhook.verify(body, req.headers);
  } catch (error) {
    console.log(`refused: ${error.message}`);
    res.writeHead(400).end();
    return;
  }
  // A delivery can arrive more than once: webhook-id tells them apart.
  console.log(`verified ${event.type} ${req.headers["webhook-id"]}`);
  res.writeHead(204).end();
});

server.listen(Number(process.env.PORT ?? 8000), "127.0.0.1", () => {
  console.log(`listening on ${server.address().port}`);
});
