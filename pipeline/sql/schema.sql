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
    -- the keyed hash of the row's platform response id (as seen_responses), or NULL without one:
    -- a response read again from a corrected re-export is counted once in the public report
    response_key VARCHAR,
    -- the keyed hash of the row's content (submission time, email or username, every answer;
    -- pipeline/validate.py content_keys). A later export's row without a response id (Google Forms,
    -- plain tables...) with the same content as a loaded row is a duplicate (each loaded row matches
    -- one row at most), and is counted once in the public report; so is a row with a response id
    -- matching a row loaded without one (the wave exported both ways). A row without an id matching a
    -- row loaded with one keeps that row's response_key
    content_key VARCHAR,
    -- a quarantined row without a response id: the keyed hash of its content without the answers that
    -- failed (fix_key; submission time to the second) and which those were (fix_left_out)...
    fix_key VARCHAR,
    fix_left_out VARCHAR,
    -- ...and, once a later export loaded its fixed version, that row (counted as one response with it)
    fixed_in VARCHAR,
    fixed_row INTEGER,
    PRIMARY KEY (file_sha256, source_row)
);
-- added after warehouses were made without it (their rows keep NULL: counted as before, by row)
ALTER TABLE row_outcomes ADD COLUMN IF NOT EXISTS response_key VARCHAR;
-- likewise; rows loaded without a response id before it existed keep NULL, and a later export of
-- their wave without response ids stops the run until they are taken back (pipeline/run.py)
ALTER TABLE row_outcomes ADD COLUMN IF NOT EXISTS content_key VARCHAR;
-- likewise (rows stored before: rows with response ids have no content key, and an export of their
-- wave without response ids stops the run until they are taken back; quarantined rows without
-- response ids have no fix key and stay waiting until fixed some other way)
ALTER TABLE row_outcomes ADD COLUMN IF NOT EXISTS fix_key VARCHAR;
ALTER TABLE row_outcomes ADD COLUMN IF NOT EXISTS fix_left_out VARCHAR;
ALTER TABLE row_outcomes ADD COLUMN IF NOT EXISTS fixed_in VARCHAR;
ALTER TABLE row_outcomes ADD COLUMN IF NOT EXISTS fixed_row INTEGER;

-- Every failed rule of every quarantined row. `value`: what validate.shown_value lets through (a
-- number, code, date or the question's own answer text; words that could be a name replaced by
-- "(text of N characters, not shown: ...)"), then scrubbed as open answers are ([PHONE]...);
-- NULL where any value could identify (open-text and direct questions).
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

-- Every rule each file was validated with (generated from the instrument or declared in the wave's
-- rules.yaml), with the column it read and how many of the rows checked failed it.
CREATE TABLE IF NOT EXISTS validation_rules (
    file_sha256   VARCHAR NOT NULL,
    rule          VARCHAR NOT NULL,
    concept       VARCHAR NOT NULL,
    column_name   VARCHAR NOT NULL,
    expectation   VARCHAR NOT NULL,   -- the Great Expectations expectation that ran it
    rows_checked  INTEGER NOT NULL,
    rows_failed   INTEGER NOT NULL,
    PRIMARY KEY (file_sha256, rule, concept)
);

-- Keyed hashes of the response ids of quarantined rows: a quarantined response whose key later
-- appears in seen_responses was fixed at the source, exported again and loaded (released).
CREATE TABLE IF NOT EXISTS quarantine_keys (
    file_sha256  VARCHAR NOT NULL,
    source_row   INTEGER NOT NULL,
    response_key VARCHAR NOT NULL,
    PRIMARY KEY (file_sha256, source_row)
);

-- De-identified respondents: a random key (a whole number), new for every load, derived from nothing.
CREATE TABLE IF NOT EXISTS respondents (
    respondent_key BIGINT PRIMARY KEY,
    wave           INTEGER NOT NULL,
    file_sha256    VARCHAR NOT NULL
);

-- Data-quality flags of loaded respondents (speeder, straightlining, mostly_empty, or a rules.yaml
-- rule with severity flag). They never set a response aside; `detail` names the grids concerned.
CREATE TABLE IF NOT EXISTS quality_flags (
    respondent_key BIGINT NOT NULL,
    wave           INTEGER NOT NULL,
    flag           VARCHAR NOT NULL,
    detail         VARCHAR,
    PRIMARY KEY (respondent_key, flag)
);

-- Coded answers, long: one row per answer (one per selected option for multiple choice).
CREATE TABLE IF NOT EXISTS answers (
    respondent_key BIGINT NOT NULL,
    wave           INTEGER NOT NULL,
    concept        VARCHAR NOT NULL,
    value          VARCHAR NOT NULL
);

-- Open answers after scrubbing; `placeholders` counts what was replaced.
CREATE TABLE IF NOT EXISTS open_text (
    respondent_key BIGINT NOT NULL,
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
-- added after warehouses were made without them: who is asked (the canonical show_if as JSON, ''
-- for everyone) and a numeric answer's unit ('' for none). The waves stored before are listed in
-- warehouse_meta (below) and filled in from their questionnaires at the next run.
ALTER TABLE concepts ADD COLUMN IF NOT EXISTS show_if VARCHAR;
ALTER TABLE concepts ADD COLUMN IF NOT EXISTS unit VARCHAR;

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

-- How every column of the respondent data is protected, per wave (written by the de-identification
-- stage from surveys/privacy.yaml): k_anonymity_key marks the key quasi-identifiers, `treatment`
-- says what was done, and the counts say how much information that cost.
CREATE TABLE IF NOT EXISTS column_protection (
    wave               INTEGER NOT NULL,
    concept            VARCHAR NOT NULL,
    k_anonymity_key    BOOLEAN NOT NULL,
    treatment          VARCHAR NOT NULL,
    level              INTEGER,            -- generalisation level (0 = as asked), key quasi-identifiers only
    level_name         VARCHAR,
    cells_generalised  INTEGER NOT NULL,   -- stored values merged into a broader group
    cells_suppressed   INTEGER NOT NULL,   -- values removed so that no group is under k
    information_loss   DOUBLE NOT NULL,    -- loss metric, 0 (as asked) to 1 (all removed)
    PRIMARY KEY (wave, concept)
);

-- k-anonymity of each wave's stored microdata after the last run.
CREATE TABLE IF NOT EXISTS anonymity_summary (
    wave                          INTEGER PRIMARY KEY,
    k                             INTEGER NOT NULL,
    respondents                   INTEGER NOT NULL,
    smallest_class                INTEGER NOT NULL,   -- respondents sharing the rarest combination
    at_risk_before_suppression    INTEGER NOT NULL,   -- after generalisation, in groups under k
    respondents_with_suppression  INTEGER NOT NULL,
    information_loss              DOUBLE NOT NULL,    -- weighted loss metric over the key
    key_quasi_identifiers         VARCHAR NOT NULL
);

-- For auditors: every column of the respondent data with its disclosure class and protection.
CREATE OR REPLACE VIEW respondent_columns AS
SELECT c.wave, c.concept, c.section, c.type, c.disclosure, c.stored,
       coalesce(p.k_anonymity_key, false) AS k_anonymity_key, p.treatment, p.level_name AS generalised_to,
       p.cells_generalised, p.cells_suppressed, p.information_loss, c.label_en
FROM concepts c LEFT JOIN column_protection p USING (wave, concept);

-- Reference data: living wage by wave and living-wage region (from surveys/reference/).
CREATE TABLE IF NOT EXISTS living_wage (
    wave       INTEGER NOT NULL,
    lw_region  VARCHAR NOT NULL,
    rate_year  INTEGER NOT NULL,
    hourly     DOUBLE NOT NULL,
    PRIMARY KEY (wave, lw_region)
);

-- Answers derived at de-identification from the answers as given, before rounding and k-anonymity
-- (surveys/derived.yaml). Each is also in `concepts` (section 'derived', with its disclosure class).
CREATE TABLE IF NOT EXISTS derived_concepts (
    wave            INTEGER NOT NULL,
    concept         VARCHAR NOT NULL,
    reads           VARCHAR NOT NULL,   -- the questions it is worked out from, comma-separated
    reference       VARCHAR NOT NULL,   -- the reference data compared with, cited
    reference_year  INTEGER NOT NULL,   -- the year of that data used for the wave
    note            VARCHAR NOT NULL,   -- why that year, when the reference data says
    PRIMARY KEY (wave, concept)
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
-- Added with the equity breakdowns and comparisons across waves (ADD COLUMN so that warehouses
-- made before keep working): each indicator's rules in words, with concept ids and answer codes.
ALTER TABLE indicator_catalogue ADD COLUMN IF NOT EXISTS population_rule VARCHAR;  -- the denominator
ALTER TABLE indicator_catalogue ADD COLUMN IF NOT EXISTS condition_rule VARCHAR;   -- the numerator ('' for a mean)
ALTER TABLE indicator_catalogue ADD COLUMN IF NOT EXISTS value VARCHAR;            -- the score a mean averages
ALTER TABLE indicator_catalogue ADD COLUMN IF NOT EXISTS breakdowns VARCHAR;       -- breakdown ids, comma-separated
ALTER TABLE indicator_catalogue ADD COLUMN IF NOT EXISTS min_n INTEGER;            -- minimum reportable n
ALTER TABLE indicator_catalogue ADD COLUMN IF NOT EXISTS comparability VARCHAR;    -- stated wave pairs, in words
ALTER TABLE indicator_catalogue ADD COLUMN IF NOT EXISTS waves VARCHAR;            -- waves with figures

-- The scores of surveys/indicators.yaml (e.g. epi_score), one row per question they are made of,
-- with that question's wording and points as the loaded questionnaires give them: written with the
-- figures, so the open data release says what each score it reports is made of. Added after
-- warehouses were made without it (IF NOT EXISTS): theirs is filled at the next indicator run.
CREATE TABLE IF NOT EXISTS indicator_scores (
    score       VARCHAR NOT NULL,
    title       VARCHAR NOT NULL,
    definition  VARCHAR NOT NULL,
    item        VARCHAR NOT NULL,   -- a question id
    wording     VARCHAR NOT NULL,   -- as asked (English), by wave when it changed; '' when no wave asked it
    points      VARCHAR NOT NULL,   -- points by answer code, in words, by wave when they changed
    waves       VARCHAR NOT NULL,   -- waves whose questionnaire asked it, comma-separated
    item_max    DOUBLE NOT NULL,
    min_items   INTEGER NOT NULL,
    scaling     VARCHAR NOT NULL,   -- how the points become 0-100, partial answers included, in words
    sort_order  INTEGER NOT NULL,   -- catalogue order of the score, then of its items
    PRIMARY KEY (score, item)
);

-- How respondents are grouped (the `breakdowns` of surveys/indicators.yaml), for the methods page.
CREATE TABLE IF NOT EXISTS indicator_breakdowns (
    breakdown   VARCHAR PRIMARY KEY,
    title       VARCHAR NOT NULL,
    definition  VARCHAR NOT NULL,
    groups      VARCHAR NOT NULL,   -- how each group is formed, in words
    sort_order  INTEGER NOT NULL
);

-- Each group against everyone else in its breakdown (who answered it), same indicator and wave.
CREATE TABLE IF NOT EXISTS indicator_gaps (
    indicator_id   VARCHAR NOT NULL,
    wave           INTEGER NOT NULL,
    breakdown      VARCHAR NOT NULL,
    group_code     VARCHAR NOT NULL,
    group_label    VARCHAR NOT NULL,
    n              INTEGER NOT NULL,   -- the group (as in indicator_estimates)
    count          INTEGER,
    estimate       DOUBLE,
    rest_n         INTEGER NOT NULL,   -- everyone else in the breakdown
    rest_count     INTEGER,
    rest_estimate  DOUBLE,
    gap            DOUBLE,             -- group minus everyone else: percentage points, or score points
    gap_low        DOUBLE,             -- 95% interval: Newcombe (proportions), Welch (means)
    gap_high       DOUBLE,
    statement      VARCHAR,            -- whether the interval leaves out zero, in words
    suppressed     BOOLEAN NOT NULL,
    suppression    VARCHAR,
    PRIMARY KEY (indicator_id, wave, breakdown, group_code)
);

-- Each wave against the previous wave with the indicator, overall and for every group in both.
CREATE TABLE IF NOT EXISTS indicator_changes (
    indicator_id        VARCHAR NOT NULL,
    wave                INTEGER NOT NULL,
    previous_wave       INTEGER NOT NULL,
    breakdown           VARCHAR NOT NULL,
    group_code          VARCHAR NOT NULL,
    group_label         VARCHAR NOT NULL,
    comparability       VARCHAR NOT NULL CHECK (comparability IN ('comparable', 'comparable_with_caveat', 'not_comparable')),
    comparability_note  VARCHAR NOT NULL,
    n                   INTEGER NOT NULL,
    estimate            DOUBLE,
    previous_n          INTEGER NOT NULL,
    previous_estimate   DOUBLE,
    change              DOUBLE,        -- NULL when not comparable
    change_low          DOUBLE,        -- 95% interval: Newcombe (proportions), Welch (means)
    change_high         DOUBLE,
    statement           VARCHAR,       -- increase / decrease beyond chance variation, noise, or not comparable
    suppressed          BOOLEAN NOT NULL,
    suppression         VARCHAR,
    PRIMARY KEY (indicator_id, breakdown, group_code, wave)
);

-- Raw exports deleted by `consult purge-raw` once their wave's release was published: the ledger
-- keeps what each file brought, this table says the file itself is gone on purpose (not missing),
-- with its hash so the recorded state stays traceable. CREATE IF NOT EXISTS: older warehouses get
-- it the next time the schema is applied (every load, every purge).
CREATE TABLE IF NOT EXISTS purges (
    file_sha256      VARCHAR PRIMARY KEY,
    file_name        VARCHAR NOT NULL,
    wave             INTEGER NOT NULL,
    bytes            BIGINT NOT NULL,
    purged_on        DATE NOT NULL,       -- when: the date is the point of the record
    release_version  VARCHAR NOT NULL     -- the published release that holds the wave
);

-- The `inclusion:` rules (instrument.yaml) each wave's exports were loaded under, as JSON: the
-- responses they excluded were not kept, so a run stops when a loaded wave's rules change
-- (pipeline/population.py, inclusion_changed_since_loaded) rather than mix two populations.
CREATE TABLE IF NOT EXISTS wave_inclusion (
    wave   INTEGER PRIMARY KEY,
    rules  VARCHAR NOT NULL
);

-- Release versions recorded as published (`consult mark-published`): a later report or release
-- under the same version must hold the same figures (pipeline/release.py, check_version). Not named
-- published_*: those are the views whose figures leave the warehouse.
CREATE TABLE IF NOT EXISTS release_publications (
    version          VARCHAR PRIMARY KEY,
    release_date     DATE NOT NULL,       -- the release's date, from surveys/release.yaml
    published_on     DATE NOT NULL,       -- when it was recorded: the date is the point of the record
    figures_sha256   VARCHAR NOT NULL,    -- one hash of the release's data tables (CSV)
    tables           VARCHAR NOT NULL     -- JSON: each data table's SHA-256, to name what changed
);

-- Each wave's disclosure-control outcome (pipeline/indicators.py, suppress_by_wave) with a fingerprint of
-- everything it was worked out from: a later load reuses it for the waves whose fingerprint is unchanged.
CREATE TABLE IF NOT EXISTS suppression_memo (
    wave        INTEGER PRIMARY KEY,
    fingerprint VARCHAR NOT NULL,       -- SHA-256 of the wave's cells, answer codes, definitions, rules, code
    outcome     VARCHAR NOT NULL        -- JSON: per cell in order, suppression, suppressed, no_group, gaps_withheld
);

-- Small key/value facts about the warehouse (e.g. the hash of the indicator definitions).
CREATE TABLE IF NOT EXISTS warehouse_meta (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);
-- The waves stored before who is asked and units were kept (comma-separated): two of them are not
-- compared on those (pipeline/load.py, unrecorded_waves), so a warehouse made before keeps running.
INSERT INTO warehouse_meta
SELECT 'waves_before_show_if', string_agg(DISTINCT wave::VARCHAR, ',' ORDER BY wave::VARCHAR)
FROM concepts WHERE show_if IS NULL HAVING count(*) > 0
ON CONFLICT DO NOTHING;
-- The waves loaded before runs compared who is in scope (the instruments' `inclusion:` rules)
-- between waves (comma-separated, '' for none): two of them are not compared (pipeline/load.py,
-- waves_before_inclusion_check), so a warehouse made before does not stop over years it published.
INSERT INTO warehouse_meta
SELECT 'waves_before_inclusion_check', coalesce(string_agg(DISTINCT wave::VARCHAR, ',' ORDER BY wave::VARCHAR), '')
FROM load_ledger
ON CONFLICT DO NOTHING;

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

-- Gaps and changes that may leave the warehouse: hidden ones carry no number and no statement.
CREATE OR REPLACE VIEW published_gaps AS
SELECT
    indicator_id, wave, breakdown, group_code, group_label,
    CASE WHEN suppressed THEN NULL ELSE n END             AS n,
    CASE WHEN suppressed THEN NULL ELSE count END         AS count,
    CASE WHEN suppressed THEN NULL ELSE estimate END      AS estimate,
    CASE WHEN suppressed THEN NULL ELSE rest_n END        AS rest_n,
    CASE WHEN suppressed THEN NULL ELSE rest_count END    AS rest_count,
    CASE WHEN suppressed THEN NULL ELSE rest_estimate END AS rest_estimate,
    CASE WHEN suppressed THEN NULL ELSE gap END           AS gap,
    CASE WHEN suppressed THEN NULL ELSE gap_low END       AS gap_low,
    CASE WHEN suppressed THEN NULL ELSE gap_high END      AS gap_high,
    CASE WHEN suppressed THEN NULL ELSE statement END     AS statement,
    suppressed, suppression
FROM indicator_gaps;

CREATE OR REPLACE VIEW published_changes AS
SELECT
    indicator_id, wave, previous_wave, breakdown, group_code, group_label, comparability, comparability_note,
    CASE WHEN suppressed THEN NULL ELSE n END                 AS n,
    CASE WHEN suppressed THEN NULL ELSE estimate END          AS estimate,
    CASE WHEN suppressed THEN NULL ELSE previous_n END        AS previous_n,
    CASE WHEN suppressed THEN NULL ELSE previous_estimate END AS previous_estimate,
    CASE WHEN suppressed THEN NULL ELSE change END            AS change,
    CASE WHEN suppressed THEN NULL ELSE change_low END        AS change_low,
    CASE WHEN suppressed THEN NULL ELSE change_high END       AS change_high,
    CASE WHEN suppressed THEN NULL ELSE statement END         AS statement,
    suppressed, suppression
FROM indicator_changes;
