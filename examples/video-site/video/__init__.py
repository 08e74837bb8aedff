"""The video site's background work: transcoding, mail, the hourly report."""
