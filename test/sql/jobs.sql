-- jobs.sql — background training jobs: glintru_train_start() trains in a
-- background worker (the same model as glintru_train() for the same
-- options), glintru_jobs() lists the jobs, glintru_train_cancel() cancels
-- a queued job; argument errors, privileges (a job runs as the role that
-- started it), a rolled-back start, a replacing job that rebuilds an
-- attached table.  Disconnects, running cancels and restarts: test/t/005_jobs.pl.
SET client_min_messages = warning;   -- epoch NOTICEs carry timings
CREATE TABLE jobs_ev AS SELECT * FROM glintru_synthetic_interactions(200, 90, 15, 3);

-- wait (up to 60 s) until a job has ended; its state
CREATE FUNCTION pg_temp.wait_job(job bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE s text;
BEGIN
  FOR i IN 1..1200 LOOP
    SELECT state INTO s FROM glintru_jobs() WHERE id = job;
    EXIT WHEN s IS NULL OR s NOT IN ('queued', 'running');
    PERFORM pg_sleep(0.05);
  END LOOP;
  RETURN s;
END $$;
-- glintru_jobs() of one job, volatile columns (times, loss) masked
CREATE FUNCTION pg_temp.show_job(job bigint) RETURNS TABLE(model text, interactions regclass, role text, state text,
       epoch integer, epochs integer, loss_positive boolean, val_ndcg10_in_range boolean,
       times_ordered boolean, model_stored boolean, error text) LANGUAGE sql AS $$
  SELECT j.model, j.interactions, j.role, j.state, j.epoch, j.epochs, j.loss > 0,
         j.val_ndcg10 BETWEEN 0 AND 1 AND j.best_val_ndcg10 >= j.val_ndcg10,
         j.created <= j.started AND j.started <= j.finished,
         j.model_id = (SELECT id FROM glintru.models m WHERE m.name = j.model), j.error
  FROM glintru_jobs() j WHERE j.id = job
$$;

-- a job trains to done and stores the model glintru_train() makes of the same options
SELECT glintru_train_start('jobs_a', 'jobs_ev', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 3, "seed": 5}') AS job \gset
SELECT :job > 0 AS job_id_returned;
SELECT pg_temp.wait_job(:job);
SELECT * FROM pg_temp.show_job(:job);
SELECT glintru_train('jobs_b', 'jobs_ev', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 3, "seed": 5}') > 0 AS trained;
SELECT (SELECT checksum FROM glintru_models() WHERE name = 'jobs_a') = (SELECT checksum FROM glintru_models() WHERE name = 'jobs_b') AS same_model_as_glintru_train;
SELECT count(*) AS recommended FROM glintru_recommend_history('jobs_a', ARRAY[1001, 1002], 5);

-- errors, at once and in the caller's transaction (the same checks as glintru_train)
SELECT glintru_train_start('jobs_a', 'jobs_ev', options => '{"epochs": 1}');
SELECT glintru_train_start('jobs_x', 'jobs_ev', options => '{"epochz": 1}');
SELECT glintru_train_start('jobs_x', 'jobs_ev', options => '{"d": 30, "heads": 4}');
SELECT glintru_train_start('jobs_x', 'jobs_ev', options => '{"init_from": "no_such_model"}');
SELECT glintru_train_start('jobs_x', 'jobs_ev', options => '[1]');
SELECT glintru_train_start('', 'jobs_ev');
SELECT glintru_train_start('jobs_x', 'no_such_table');
SELECT glintru_train_start('jobs_x', 'jobs_ev', item_column => 'nope');
SELECT glintru_train_cancel(-1);
SET client_min_messages = notice;
SELECT glintru_train_cancel(:job);       -- already done: false, with a NOTICE
SET client_min_messages = warning;
SELECT count(*) AS jobs FROM glintru_jobs();

-- a rolled-back start (or subtransaction) never trains; a cancelled queued job never runs
BEGIN;
SELECT glintru_train_start('jobs_rolled_back', 'jobs_ev', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 1}') > 0 AS started;
ROLLBACK;
BEGIN;
SAVEPOINT s;
SELECT glintru_train_start('jobs_subxact', 'jobs_ev', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 1}') > 0 AS started;
ROLLBACK TO s;
COMMIT;
BEGIN;
SELECT glintru_train_start('jobs_cancelled', 'jobs_ev', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 1}') AS job2 \gset
SELECT glintru_train_cancel(:job2) AS cancelled;
SELECT state FROM glintru_jobs() WHERE id = :job2;
COMMIT;
-- the three workers wait for their transaction, then exit without training
-- (a job started after them has run to done: by then they have started too)
SELECT glintru_train_start('jobs_sentinel', 'jobs_ev', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 1}') AS sentinel \gset
SELECT pg_temp.wait_job(:sentinel) AS sentinel;
DO $$ BEGIN
  FOR i IN 1..1200 LOOP
    EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'glintru job');
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SELECT count(*) AS job_workers FROM pg_stat_activity WHERE backend_type = 'glintru job';
SELECT model, state, epoch, started IS NULL AS never_started, error FROM glintru_jobs() WHERE id = :job2;
SELECT count(*) AS stored FROM glintru_models() WHERE name IN ('jobs_rolled_back', 'jobs_subxact', 'jobs_cancelled');

-- privileges: not granted to PUBLIC; a job runs as the role that started it
-- (its SELECT rights apply to the table); only that role (or a member, or a
-- superuser) may cancel it; the list is open to everyone
CREATE ROLE regress_glintru_jobs_user LOGIN;
CREATE ROLE regress_glintru_jobs_other LOGIN;
CREATE ROLE regress_glintru_jobs_group NOLOGIN;
SET ROLE regress_glintru_jobs_user;
SELECT glintru_train_start('jobs_u', 'jobs_ev');
SELECT glintru_train_cancel(:job);
SELECT count(*) > 0 AS jobs_listed FROM glintru_jobs();
RESET ROLE;
GRANT EXECUTE ON FUNCTION glintru_train_start(text, regclass, name, name, name, jsonb),
                          glintru_train_cancel(bigint)
  TO regress_glintru_jobs_user, regress_glintru_jobs_other, regress_glintru_jobs_group;
SET ROLE regress_glintru_jobs_user;
SELECT glintru_train_start('jobs_u', 'jobs_ev', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 1}') AS job3 \gset
RESET ROLE;
SELECT pg_temp.wait_job(:job3);
SELECT model, role, state, epoch, error FROM glintru_jobs() WHERE id = :job3;
GRANT SELECT ON jobs_ev TO regress_glintru_jobs_user;
SET ROLE regress_glintru_jobs_user;
SELECT glintru_train_start('jobs_u', 'jobs_ev', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 1}') AS job4 \gset
SET ROLE regress_glintru_jobs_other;
SELECT glintru_train_cancel(:job4);
RESET ROLE;
SELECT pg_temp.wait_job(:job4);
SELECT * FROM pg_temp.show_job(:job4);
SET ROLE regress_glintru_jobs_group;
SELECT glintru_train_start('jobs_g', 'jobs_ev');
RESET ROLE;

-- a replacing job stores the model and rebuilds the attached table's states in one transaction
SELECT glintru_attach('jobs_a', 'jobs_ev') AS users_with_state;
SELECT version AS version_before FROM glintru.models WHERE name = 'jobs_a' \gset
SELECT glintru_train_start('jobs_a', 'jobs_ev', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 2, "seed": 8, "replace": true}') AS job5 \gset
SELECT pg_temp.wait_job(:job5);
SELECT (SELECT version FROM glintru.models WHERE name = 'jobs_a') > :version_before AS replaced,
       (SELECT model_version FROM glintru.attachments WHERE relid = 'jobs_ev'::regclass) = (SELECT version FROM glintru.models WHERE name = 'jobs_a') AS attachment_rebuilt,
       (SELECT count(*) FROM glintru_verify_state('jobs_ev')) AS problems;
SELECT glintru_detach('jobs_ev');

-- the job history goes with the extension's tables; clean up
SELECT count(*) AS jobs, count(*) FILTER (WHERE state = 'done') AS done FROM glintru_jobs();
DROP OWNED BY regress_glintru_jobs_user, regress_glintru_jobs_other, regress_glintru_jobs_group;
DROP ROLE regress_glintru_jobs_user, regress_glintru_jobs_other, regress_glintru_jobs_group;
SELECT glintru_drop_model(name) FROM glintru_models() WHERE name LIKE 'jobs_%';
