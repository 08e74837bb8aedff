"""The chaos run's pieces (bench/chaos.py): one module per fault family — worker pods
killed and scaled down (``worker_pods``), the broker crashed or frozen (``broker``), a pod
cut off (``partition``), the control plane restarted (``control_plane``, with its cron
ticks counted in ``cron_ticks``) — on what they share: the run's sizes (``plan``), the
ledger of executions (``ledger``), the pods (``pods``), the producer and the counting
(``traffic``, ``paced``) and the figures' summary (``summary``)."""
