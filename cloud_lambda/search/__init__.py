"""The search Lambda: IoT rule event → validated vector → k-NN → match record in Redis (+ publish)."""
