-- Where each target is probed from (agent/vantage.py): one smallint on its dimension row, so
-- that it costs nothing per probe event. Null: not said (an agent from before vantages).
--   host: from the agent's own network; container: from inside the container's network
--   namespace; none: not probed, as no vantage of the agent reaches the address.
CREATE TABLE target_vantages (
    code    smallint PRIMARY KEY,
    vantage text NOT NULL UNIQUE
);
INSERT INTO target_vantages (code, vantage) VALUES (0, 'host'), (1, 'container'), (2, 'none');

ALTER TABLE targets ADD COLUMN vantage smallint REFERENCES target_vantages;
