<?php
// Verifies the deliveries of https://example.com/webhooks with the official
// Standard Webhooks library:  composer require standard-webhooks/standard-webhooks
// WEBHOOK_SECRET is this webhook's signing secret (whsec_…), the one saved on
// its Edit page. It is never shown again: if it is lost, rotate it there.
//
// Laravel: put 'webhook_secret' => env('WEBHOOK_SECRET') in config/services.php
// and verified_event() in a helper file, then in routes/api.php:
//
//   Route::post('/webhooks', function (Illuminate\Http\Request $request) {
//       try {
//           $event = verified_event(config('services.webhook_secret'),
//               $request->getContent(), $request->header(...));
//       } catch (StandardWebhooks\Exception\WebhookVerificationException) {
//           abort(400);
//       }
//       // … handle $event once per webhook-id …
//       return response()->noContent();
//   });
//
// Plain PHP:  WEBHOOK_SECRET=whsec_… php -S 127.0.0.1:8000 receiver.php
require __DIR__ . '/vendor/autoload.php';

use StandardWebhooks\Exception\WebhookVerificationException;
use StandardWebhooks\Webhook;

/** The delivery's event if $secret signed it; throws WebhookVerificationException otherwise. */
function verified_event(string $secret, string $body, callable $header): array
{
    // Verify the raw body, before any JSON parsing.
    return (new Webhook($secret))->verify($body, [
        'webhook-id' => $header('webhook-id'),
        'webhook-timestamp' => $header('webhook-timestamp'),
        'webhook-signature' => $header('webhook-signature'),
    ]);
}

if (PHP_SAPI === 'cli-server') {
    $header = fn (string $name) => $_SERVER['HTTP_' . strtoupper(str_replace('-', '_', $name))] ?? null;
    try {
        $event = verified_event(getenv('WEBHOOK_SECRET'), file_get_contents('php://input'), $header);
    } catch (WebhookVerificationException $error) {
        file_put_contents('php://stderr', 'refused: ' . $error->getMessage() . "\n");
        http_response_code(400);
        return;
    }
    // A delivery can arrive more than once: webhook-id tells them apart.
    file_put_contents('php://stderr', "verified {$event['type']} " . $header('webhook-id') . "\n");
    http_response_code(204);
}
