"""Sweeps that search (issue 23): W&B sweep configurations run as Adjutant jobs.

Two kinds of sweep share one service and two tables (``sweeps``, ``sweep_trials``):

- **search**: Adjutant is the controller. ``config`` parses a W&B sweep configuration and ``search`` proposes
  trials from the ones recorded (both pure); each trial is one Adjutant job, attached to one W&B sweep created with
  ``controller: {type: local}``.
- **agents**: W&B's own controller hands out the trials; each agent is an Adjutant job running
  ``agent_job.py`` (``wandb agent --count 1``), and the service keeps ``n`` of them working.

Modules: ``store`` (SweepStore: the tables, compare-and-set state changes), ``service`` (SweepService:
Discord-free, one ``tick`` per pass), ``wandb_sweeps`` (the only sweep code calling wandb; blocking, run in a
thread), ``config`` and ``search`` (pure), ``agent_job`` (the agent job's script).
"""
