"""Campaigns: runs recorded together (a sweep's job-array members, a chain's stage jobs). Login side."""
