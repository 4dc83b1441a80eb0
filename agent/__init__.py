"""One node of the cluster: its link to the scheduler, and what runs the tasks it is given."""
