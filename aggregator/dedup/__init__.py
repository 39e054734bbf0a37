"""Near-duplicate, story and thread clustering of news items."""
