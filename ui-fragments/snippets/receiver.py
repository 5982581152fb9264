# Verifies the deliveries of https://example.com/webhooks with the official
# Standard Webhooks library:  pip install standardwebhooks
# WEBHOOK_SECRET is this webhook's signing secret (whsec_…), the one saved on
# its Edit page. It is never shown again: if it is lost, rotate it there.
# Run:  WEBHOOK_SECRET=whsec_… PORT=8000 python3 receiver.py
import os
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

webhook = Webhook(os.environ["WEBHOOK_SECRET"])


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        # Verify the raw bytes, before any JSON parsing.
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            event = webhook.verify(body, dict(self.headers))
        except WebhookVerificationError as error:
            print(f"refused: {error}", flush=True)
            self.send_response(400)
            self.end_headers()
            return
        # A delivery can arrive more than once: webhook-id tells them apart.
        print(f"verified {event['type']} {self.headers['webhook-id']}", flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8000"))), Receiver)
print(f"listening on {server.server_port}", flush=True)
server.serve_forever()
