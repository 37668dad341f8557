"""Pure domain code: statuses, records, lifecycle rules. No I/O."""
