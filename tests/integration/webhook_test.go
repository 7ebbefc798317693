//go:build integration

package integration

import "testing"

// TestWebhookDeliveredTwiceToTwoReplicasAppliedOnce: replicas share their
// webhook secrets, so one signed event delivered to two different replicas
// verifies on both and is applied once.
func TestWebhookDeliveredTwiceToTwoReplicasAppliedOnce(t *testing.T) {
	t.Skip("needs the webhook plane (issue 3, POST /v1/webhooks/provider and PAYMENTS_WEBHOOK_SECRETS), which is not on main yet")
}
