//! Downloads: a content-addressed cache and an HTTP fetcher that trusts only digests.
