-- The warehouse schema. Applied (idempotently) before every load; never edited in place by hand.
-- Staging layer: what each load brought, de-identified. Marts: indicator estimates, rebuilt.

-- One row per export file ever loaded. Its checks are the accounting identity of the pipeline:
-- every row read is loaded, quarantined, excluded or a duplicate, nothing else.
CREATE TABLE IF NOT EXISTS load_ledger (
    file_sha256        VARCHAR PRIMARY KEY,
    file_name          VARCHAR NOT NULL,
    wave               INTEGER NOT NULL,
    platform           VARCHAR NOT NULL,
    synthetic          BOOLEAN NOT NULL,
    instrument_sha256  VARCHAR NOT NULL,
    run_id             VARCHAR NOT NULL,
    loaded_at          TIMESTAMP NOT NULL,   -- when: the one timestamp whose point is to be one
    rows_read          INTEGER NOT NULL,
    rows_loaded        INTEGER NOT NULL,
    rows_quarantined   INTEGER NOT NULL,
    rows_excluded      INTEGER NOT NULL,
    rows_duplicate     INTEGER NOT NULL,
    CHECK (rows_read = rows_loaded + rows_quarantined + rows_excluded + rows_duplicate),
    CHECK (rows_loaded >= 0 AND rows_quarantined >= 0 AND rows_excluded >= 0 AND rows_duplicate >= 0)
);

-- One row per row read: its outcome and why. Row numbers count header rows, as a spreadsheet does.
CREATE TABLE IF NOT EXISTS row_outcomes (
    file_sha256  VARCHAR NOT NULL,
    source_row   INTEGER NOT NULL,
    outcome      VARCHAR NOT NULL CHECK (outcome IN ('loaded', 'quarantined', 'excluded', 'duplicate')),
    reason       VARCHAR,
    PRIMARY KEY (file_sha256, source_row)
);

-- Every failed rule of every quarantined row. `value` is NULL where it could identify someone.
CREATE TABLE IF NOT EXISTS quarantine_issues (
    file_sha256  VARCHAR NOT NULL,
    source_row   INTEGER NOT NULL,
    rule         VARCHAR NOT NULL,
    concept      VARCHAR NOT NULL,
    value        VARCHAR
);

-- Keyed hashes (HMAC, secret kept outside the repository) of platform response ids already
-- loaded, so a response exported again in a later file counts as a duplicate.
CREATE TABLE IF NOT EXISTS seen_responses (
    response_key VARCHAR PRIMARY KEY,
    file_sha256  VARCHAR NOT NULL
);

-- De-identified respondents: a random key, new for every load, derived from nothing.
CREATE TABLE IF NOT EXISTS respondents (
    respondent_key VARCHAR PRIMARY KEY,
    wave           INTEGER NOT NULL,
    file_sha256    VARCHAR NOT NULL
);

-- Coded answers, long: one row per answer (one per selected option for multiple choice).
CREATE TABLE IF NOT EXISTS answers (
    respondent_key VARCHAR NOT NULL,
    wave           INTEGER NOT NULL,
    concept        VARCHAR NOT NULL,
    value          VARCHAR NOT NULL
);

-- Open answers after scrubbing; `placeholders` counts what was replaced.
CREATE TABLE IF NOT EXISTS open_text (
    respondent_key VARCHAR NOT NULL,
    wave           INTEGER NOT NULL,
    concept        VARCHAR NOT NULL,
    text           VARCHAR NOT NULL,
    placeholders   INTEGER NOT NULL
);

-- The instruments, so the warehouse describes itself: every concept with its disclosure class.
CREATE TABLE IF NOT EXISTS concepts (
    wave        INTEGER NOT NULL,
    concept     VARCHAR NOT NULL,
    section     VARCHAR NOT NULL,
    type        VARCHAR NOT NULL,
    disclosure  VARCHAR NOT NULL CHECK (disclosure IN ('direct', 'quasi', 'sensitive', 'none')),
    stored      BOOLEAN NOT NULL,   -- direct identifiers are described but never stored
    label_en    VARCHAR NOT NULL,
    label_fr    VARCHAR NOT NULL,
    PRIMARY KEY (wave, concept)
);

CREATE TABLE IF NOT EXISTS choices (
    wave      INTEGER NOT NULL,
    concept   VARCHAR NOT NULL,
    code      VARCHAR NOT NULL,
    label_en  VARCHAR NOT NULL,
    label_fr  VARCHAR NOT NULL,
    score     DOUBLE,
    missing   BOOLEAN NOT NULL,
    PRIMARY KEY (wave, concept, code)
);

-- Reference data: living wage by wave and living-wage region (from surveys/reference/).
CREATE TABLE IF NOT EXISTS living_wage (
    wave       INTEGER NOT NULL,
    lw_region  VARCHAR NOT NULL,
    rate_year  INTEGER NOT NULL,
    hourly     DOUBLE NOT NULL,
    PRIMARY KEY (wave, lw_region)
);

-- Marts: indicator estimates by wave and breakdown, with disclosure control applied.
CREATE TABLE IF NOT EXISTS indicator_estimates (
    indicator_id    VARCHAR NOT NULL,
    wave            INTEGER NOT NULL,
    breakdown       VARCHAR NOT NULL,   -- 'all' or a concept id such as oh_region
    group_code      VARCHAR NOT NULL,   -- 'all' or an answer code
    group_label     VARCHAR NOT NULL,
    n               INTEGER NOT NULL,   -- the denominator: respondents in the population who answered
    count           INTEGER,            -- numerator, for proportions
    estimate        DOUBLE,             -- percentage (0-100) or mean
    ci_low          DOUBLE,
    ci_high         DOUBLE,
    suppressed      BOOLEAN NOT NULL,
    suppression     VARCHAR,            -- why: primary rule or complementary
    PRIMARY KEY (indicator_id, wave, breakdown, group_code)
);

-- The indicator catalogue as loaded from surveys/indicators.yaml, for the report's methods page.
CREATE TABLE IF NOT EXISTS indicator_catalogue (
    indicator_id VARCHAR PRIMARY KEY,
    title        VARCHAR NOT NULL,
    domain       VARCHAR NOT NULL,
    kind         VARCHAR NOT NULL,
    unit         VARCHAR NOT NULL,
    definition   VARCHAR NOT NULL,
    population   VARCHAR NOT NULL,
    questions    VARCHAR NOT NULL,
    caveats      VARCHAR NOT NULL,
    sort_order   INTEGER NOT NULL
);

-- Small key/value facts about the warehouse (e.g. the hash of the indicator definitions).
CREATE TABLE IF NOT EXISTS warehouse_meta (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

-- What may leave the warehouse: suppressed cells carry no number, only the reason.
CREATE OR REPLACE VIEW published_estimates AS
SELECT
    indicator_id, wave, breakdown, group_code, group_label,
    CASE WHEN suppressed THEN NULL ELSE n END        AS n,
    CASE WHEN suppressed THEN NULL ELSE count END    AS count,
    CASE WHEN suppressed THEN NULL ELSE estimate END AS estimate,
    CASE WHEN suppressed THEN NULL ELSE ci_low END   AS ci_low,
    CASE WHEN suppressed THEN NULL ELSE ci_high END  AS ci_high,
    suppressed, suppression
FROM indicator_estimates;
