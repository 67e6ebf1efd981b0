BEGIN TRANSACTION;
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    run_id TEXT,
    job_id TEXT,
    kind TEXT NOT NULL,
    metric TEXT,
    step REAL,
    params TEXT,
    created_at TEXT NOT NULL
);
INSERT INTO "alerts" VALUES(1,'adjutant:jobs','b092f2e9','jjb366e','sweep-held',NULL,NULL,NULL,'2026-11-30T09:00:00+00:00');
INSERT INTO "alerts" VALUES(2,'team/proj','run1','j779xh6','rule','val_loss',10.0,'{"lr": 0.1}','2026-11-30T09:00:00+00:00');
CREATE TABLE approvals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    state TEXT NOT NULL,
    kind TEXT NOT NULL,
    requested_by_id INTEGER NOT NULL,
    requested_by TEXT NOT NULL,
    channel_id INTEGER,
    card_id INTEGER,
    requests TEXT NOT NULL,
    canary INTEGER NOT NULL DEFAULT 0,
    gpus INTEGER NOT NULL,
    cells INTEGER NOT NULL,
    why TEXT NOT NULL,
    created_at TEXT NOT NULL,
    decided_by_id INTEGER,
    decided_by TEXT,
    decided_at TEXT,
    job_ids TEXT
);
INSERT INTO "approvals" VALUES(1,'pending','experiment',11,'ada',100,500,'[{"params": {"lr": 0.1}, "script": "/srv/train.sh", "requested_by_id": 11, "requested_by": "ada", "channel_id": 100, "message_id": 200, "backend": "local", "sweep_id": null, "acked": false, "ack_id": null, "project": "proj", "entity": "team", "gpus": 4, "time_limit": 3600.0}]',0,4,1,'more than 2 GPUs','2026-12-07T10:41:02.518+00:00',NULL,NULL,NULL,NULL);
INSERT INTO "approvals" VALUES(2,'approved','sweep',11,'ada',100,NULL,'[{"params": {"lr": 5}, "script": "/srv/train.sh", "requested_by_id": 11, "requested_by": "ada", "channel_id": 100, "message_id": 200, "backend": "local", "sweep_id": "sweep-3", "acked": false, "ack_id": null, "project": "proj", "entity": "team", "gpus": 1, "time_limit": 3600.0}, {"params": {"lr": 6}, "script": "/srv/train.sh", "requested_by_id": 11, "requested_by": "ada", "channel_id": 100, "message_id": 200, "backend": "local", "sweep_id": "sweep-3", "acked": false, "ack_id": null, "project": "proj", "entity": "team", "gpus": 1, "time_limit": 3600.0}]',1,1,2,'2 cells','2026-12-07T10:41:02.518+00:00',12,'bo','2026-12-07T10:41:02.519+00:00','["j2twrgb", "j7g5wzu"]');
INSERT INTO "approvals" VALUES(3,'rejected','experiment',11,'ada',100,NULL,'[{"params": {"lr": 0.1}, "script": "/srv/train.sh", "requested_by_id": 11, "requested_by": "ada", "channel_id": 100, "message_id": 200, "backend": "local", "sweep_id": null, "acked": false, "ack_id": null, "project": "proj", "entity": "team", "gpus": 1, "time_limit": 3600.0}]',0,1,1,'requester','2026-12-07T10:41:02.519+00:00',12,'bo','2026-12-07T10:41:02.519+00:00','[]');
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor_id INTEGER,
    actor TEXT NOT NULL,
    guild_id INTEGER,
    channel_id INTEGER,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT
);
INSERT INTO "audit" VALUES(1,'2026-12-07T10:41:02.519+00:00',11,'ada',1,100,'launch','j779xh6','lr=0.1');
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    script TEXT NOT NULL,
    requested_by_id INTEGER NOT NULL,
    requested_by TEXT NOT NULL,
    channel_id INTEGER,
    message_id INTEGER,
    ack_id INTEGER,
    sweep_id TEXT,
    wandb_run_id TEXT NOT NULL,
    log_path TEXT NOT NULL,
    supervisor_pid INTEGER,
    pid INTEGER,
    pgid INTEGER,
    exit_code INTEGER,
    reason TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    ended_at TEXT,
    cancel_requested_at TEXT,
    cancelled_by TEXT,
    killed_at TEXT,
    reported INTEGER NOT NULL DEFAULT 0,
    backend TEXT NOT NULL DEFAULT 'local',
    external_id TEXT,
    external_state TEXT,
    thread_id INTEGER,
    acked INTEGER NOT NULL DEFAULT 0,
    report_id INTEGER
, log_offset INTEGER NOT NULL DEFAULT 0, log_told TEXT, log_done INTEGER NOT NULL DEFAULT 1, project TEXT, entity TEXT, queue_told INTEGER NOT NULL DEFAULT 1, attempt INTEGER NOT NULL DEFAULT 1, retried_because TEXT, held INTEGER NOT NULL DEFAULT 0, overrides TEXT, remedied TEXT, gpus INTEGER NOT NULL DEFAULT 0, gpu_ids TEXT, time_limit REAL, gpus_allocated INTEGER);
INSERT INTO "jobs" VALUES(1,'j779xh6','succeeded','{"lr": 0.1}','/srv/train.sh',11,'ada',100,200,NULL,NULL,'09e930a2','/tmp/tmp38xt8c69/state/logs/j779xh6.log',4242,NULL,NULL,0,NULL,'2026-12-07T10:41:02.515+00:00','2026-11-30T09:00:00+00:00','2026-11-30T10:00:00+00:00',NULL,NULL,NULL,0,'local',NULL,NULL,300,1,NULL,0,NULL,0,'proj','team',0,1,NULL,0,NULL,NULL,1,'0',3600.0,NULL);
INSERT INTO "jobs" VALUES(2,'j8tg8g6','running','{"lr": 0.2}','/srv/train.sh',11,'ada',100,200,NULL,NULL,'5997c05d','/tmp/tmp38xt8c69/state/logs/j8tg8g6.log',NULL,NULL,NULL,NULL,NULL,'2026-12-07T10:41:02.516+00:00','2026-11-30T09:00:00+00:00',NULL,NULL,NULL,NULL,0,'slurm','777','RUNNING',NULL,0,NULL,0,NULL,0,'proj','team',0,1,NULL,0,NULL,NULL,1,NULL,3600.0,NULL);
INSERT INTO "jobs" VALUES(3,'j5frtmz','queued','{"lr": 0.3}','/srv/train.sh',11,'ada',100,200,NULL,NULL,'de4e101e','/tmp/tmp38xt8c69/state/logs/j5frtmz.log',NULL,NULL,NULL,NULL,NULL,'2026-12-07T10:41:02.516+00:00',NULL,NULL,NULL,NULL,NULL,0,'local',NULL,NULL,NULL,0,NULL,0,NULL,0,'proj','team',0,1,NULL,0,NULL,NULL,0,NULL,3600.0,NULL);
INSERT INTO "jobs" VALUES(4,'jde68xd','queued','{"lr": 1}','/srv/train.sh',11,'ada',100,200,NULL,'sweep-1','d6b6583c','/tmp/tmp38xt8c69/state/logs/jde68xd.log',NULL,NULL,NULL,NULL,NULL,'2026-12-07T10:41:02.517+00:00',NULL,NULL,NULL,NULL,NULL,0,'local',NULL,NULL,NULL,0,NULL,0,NULL,0,'proj','team',0,1,NULL,0,NULL,NULL,1,NULL,3600.0,NULL);
INSERT INTO "jobs" VALUES(5,'j6354f8','queued','{"lr": 2}','/srv/train.sh',11,'ada',100,200,NULL,'sweep-1','b38f4d04','/tmp/tmp38xt8c69/state/logs/j6354f8.log',NULL,NULL,NULL,NULL,NULL,'2026-12-07T10:41:02.517+00:00',NULL,NULL,NULL,NULL,NULL,0,'local',NULL,NULL,NULL,0,NULL,0,NULL,0,'proj','team',0,1,NULL,1,NULL,NULL,1,NULL,3600.0,NULL);
INSERT INTO "jobs" VALUES(6,'jy3npg7','queued','{"lr": 3}','/srv/train.sh',11,'ada',100,200,NULL,'sweep-1','359c63a5','/tmp/tmp38xt8c69/state/logs/jy3npg7.log',NULL,NULL,NULL,NULL,NULL,'2026-12-07T10:41:02.517+00:00',NULL,NULL,NULL,NULL,NULL,0,'local',NULL,NULL,NULL,0,NULL,0,NULL,0,'proj','team',0,1,NULL,1,NULL,NULL,1,NULL,3600.0,NULL);
INSERT INTO "jobs" VALUES(7,'jjb366e','failed','{"lr": 9}','/srv/train.sh',11,'ada',100,200,NULL,'sweep-2','b092f2e9','/tmp/tmp38xt8c69/state/logs/jjb366e.log',NULL,NULL,NULL,1,'boom','2026-12-07T10:41:02.517+00:00','2026-11-30T09:00:00+00:00','2026-11-30T10:00:00+00:00',NULL,NULL,NULL,0,'local',NULL,NULL,NULL,0,NULL,0,NULL,0,'proj','team',0,1,NULL,0,NULL,NULL,1,NULL,3600.0,NULL);
INSERT INTO "jobs" VALUES(8,'ju6cwcd','queued','{"lr": 8}','/srv/train.sh',11,'ada',100,200,NULL,'sweep-2','201232c2','/tmp/tmp38xt8c69/state/logs/ju6cwcd.log',NULL,NULL,NULL,NULL,NULL,'2026-12-07T10:41:02.517+00:00',NULL,NULL,NULL,NULL,NULL,0,'local',NULL,NULL,NULL,0,NULL,0,NULL,0,'proj','team',0,1,NULL,1,NULL,NULL,1,NULL,3600.0,NULL);
INSERT INTO "jobs" VALUES(9,'j2twrgb','queued','{"lr": 5}','/srv/train.sh',11,'ada',100,200,NULL,'sweep-3','abe91d40','/tmp/tmp38xt8c69/state/logs/j2twrgb.log',NULL,NULL,NULL,NULL,NULL,'2026-12-07T10:41:02.518+00:00',NULL,NULL,NULL,NULL,NULL,0,'local',NULL,NULL,NULL,0,NULL,0,NULL,0,'proj','team',0,1,NULL,0,NULL,NULL,1,NULL,3600.0,NULL);
INSERT INTO "jobs" VALUES(10,'j7g5wzu','queued','{"lr": 6}','/srv/train.sh',11,'ada',100,200,NULL,'sweep-3','52d07d6c','/tmp/tmp38xt8c69/state/logs/j7g5wzu.log',NULL,NULL,NULL,NULL,NULL,'2026-12-07T10:41:02.519+00:00',NULL,NULL,NULL,NULL,NULL,0,'local',NULL,NULL,NULL,0,NULL,0,NULL,0,'proj','team',0,1,NULL,1,NULL,NULL,1,NULL,3600.0,NULL);
CREATE TABLE meta (
    project TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (project, key)
);
INSERT INTO "meta" VALUES('team/proj','watermark','2026-11-30T09:00:00+00:00');
INSERT INTO "meta" VALUES('adjutant:status-cards','100','{"message_id": 900, "shown": "x"}');
CREATE TABLE mutes (
    project TEXT NOT NULL,
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    until TEXT NOT NULL,
    PRIMARY KEY (project, run_id, kind)
);
INSERT INTO "mutes" VALUES('team/proj','run1','rule','2026-11-30T10:00:00+00:00');
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    run_id TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    context TEXT,
    reply_to INTEGER,
    thread_id INTEGER,
    created_at TEXT NOT NULL
, alert_id INTEGER);
INSERT INTO "outbox" VALUES(1,'adjutant:jobs','b092f2e9','sweep-held','{"description": "1 held"}',NULL,200,NULL,'2026-12-07T10:41:02+00:00',1);
INSERT INTO "outbox" VALUES(2,'team/proj','run1','rule:1','{"title": "val_loss > 2"}','ctx',200,300,'2026-12-07T10:41:02+00:00',2);
INSERT INTO "outbox" VALUES(3,'dm:11','run1','finished','{"title": "done"}',NULL,NULL,NULL,'2026-12-07T10:41:02+00:00',NULL);
CREATE TABLE rule_hits (
    rule_id INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (rule_id, run_id)
);
INSERT INTO "rule_hits" VALUES(1,'run1');
CREATE TABLE runs (
    project TEXT NOT NULL,
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    stalled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT,
    updated_at TEXT NOT NULL, step REAL, step_since TEXT, idle INTEGER NOT NULL DEFAULT 0, nonfinite TEXT, gpu_low_since TEXT, gpu_idle INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (project, run_id)
);
INSERT INTO "runs" VALUES('team/proj','run1','bright-sky-1','running',0,'2026-11-30T09:00:00+00:00','2026-12-07T10:41:02+00:00',10.0,'2026-11-30T09:00:00+00:00',0,'["loss"]',NULL,0);
CREATE TABLE subscriptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    project TEXT NOT NULL,
    events TEXT NOT NULL,
    created_at TEXT NOT NULL
);
INSERT INTO "subscriptions" VALUES(1,11,'team/proj','["finished", "alerts"]','2026-12-07T10:41:02+00:00');
INSERT INTO "subscriptions" VALUES(2,12,'','["mine"]','2026-12-07T10:41:02+00:00');
CREATE TABLE sweep_holds (
    sweep_id TEXT PRIMARY KEY,
    signature TEXT NOT NULL,
    state TEXT NOT NULL,
    decided_at TEXT NOT NULL
);
INSERT INTO "sweep_holds" VALUES('sweep-1','','canary','2026-12-07T10:41:02.517+00:00');
INSERT INTO "sweep_holds" VALUES('sweep-2','exit 1','held','2026-11-30T09:00:00.000+00:00');
INSERT INTO "sweep_holds" VALUES('sweep-3','','canary','2026-12-07T10:41:02.519+00:00');
CREATE TABLE watch_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project TEXT NOT NULL,
    metric TEXT NOT NULL,
    op TEXT NOT NULL,
    value REAL NOT NULL,
    scope TEXT NOT NULL,
    author_id INTEGER NOT NULL,
    author TEXT NOT NULL,
    created_at TEXT NOT NULL
);
INSERT INTO "watch_rules" VALUES(1,'team/proj','val_loss','>',2.0,'all',11,'ada','2026-12-07T10:41:02+00:00');
CREATE INDEX jobs_by_state ON jobs (state);
CREATE INDEX jobs_by_run ON jobs (wandb_run_id);
CREATE INDEX runs_by_state ON runs (project, state);
CREATE INDEX audit_by_actor ON audit (actor_id, seq);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('jobs',10);
INSERT INTO "sqlite_sequence" VALUES('alerts',2);
INSERT INTO "sqlite_sequence" VALUES('outbox',3);
INSERT INTO "sqlite_sequence" VALUES('approvals',3);
INSERT INTO "sqlite_sequence" VALUES('audit',1);
INSERT INTO "sqlite_sequence" VALUES('watch_rules',1);
INSERT INTO "sqlite_sequence" VALUES('subscriptions',2);
COMMIT;
