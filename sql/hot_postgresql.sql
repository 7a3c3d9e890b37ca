-- Demo hot store (PostgreSQL): six tables of a synthetic Försäkringskassan-like operational system.
-- Types, keys, foreign keys and NOT NULL only: no CHECK constraints, so that quality-gate tests can insert bad
-- rows (wrong netto, invalid personnummer, omfattning outside its set). Ids are BIGINT assigned by the generator.
-- Every table has `andrad` (last modified, UTC) and an index on (andrad, <pk>): the promotion watermark.
-- Idempotent: safe to run again on a schema that already has the tables. Runs in the session's search_path.

CREATE TABLE IF NOT EXISTS individ (
    individ_id         BIGINT      NOT NULL PRIMARY KEY,
    personnummer       CHAR(12)    NOT NULL,
    id_typ             VARCHAR(5)  NOT NULL,
    fornamn            VARCHAR(40),
    efternamn          VARCHAR(60),
    fodelsear          SMALLINT,
    kon                CHAR(1),
    kommunkod          CHAR(4),
    skyddad_identitet  BOOLEAN     NOT NULL,
    andrad             TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS individ_andrad_idx ON individ (andrad, individ_id);
CREATE INDEX IF NOT EXISTS individ_personnummer_idx ON individ (personnummer);

CREATE TABLE IF NOT EXISTS arende (
    arende_id    BIGINT      NOT NULL PRIMARY KEY,
    individ_id   BIGINT      NOT NULL REFERENCES individ (individ_id),
    forman       VARCHAR(3)  NOT NULL,
    inkommit     DATE        NOT NULL,
    period_from  DATE,
    period_tom   DATE,
    kanal        VARCHAR(8),
    status       VARCHAR(8)  NOT NULL,
    avslutat     DATE,
    andrad       TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS arende_andrad_idx ON arende (andrad, arende_id);
CREATE INDEX IF NOT EXISTS arende_individ_idx ON arende (individ_id);

CREATE TABLE IF NOT EXISTS beslut (
    beslut_id      BIGINT       NOT NULL PRIMARY KEY,
    arende_id      BIGINT       NOT NULL REFERENCES arende (arende_id),
    beslutsdatum   DATE         NOT NULL,
    utfall         VARCHAR(10)  NOT NULL,
    omfattning     NUMERIC(4,3),
    sgi_sek        INTEGER,
    dagbelopp_sek  INTEGER,
    antal_dagar    INTEGER,
    automatiserat  BOOLEAN      NOT NULL,
    motivering     TEXT,
    andrad         TIMESTAMPTZ  NOT NULL
);
CREATE INDEX IF NOT EXISTS beslut_andrad_idx ON beslut (andrad, beslut_id);
CREATE INDEX IF NOT EXISTS beslut_arende_idx ON beslut (arende_id);

CREATE TABLE IF NOT EXISTS utbetalning (
    utbetalning_id  BIGINT      NOT NULL PRIMARY KEY,
    beslut_id       BIGINT      NOT NULL REFERENCES beslut (beslut_id),
    individ_id      BIGINT      NOT NULL REFERENCES individ (individ_id),
    utbetald        DATE        NOT NULL,
    avser_from      DATE,
    avser_tom       DATE,
    brutto_sek      INTEGER,
    skatt_sek       INTEGER,
    netto_sek       INTEGER,
    konto           VARCHAR(20),
    status          VARCHAR(12),
    andrad          TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS utbetalning_andrad_idx ON utbetalning (andrad, utbetalning_id);
CREATE INDEX IF NOT EXISTS utbetalning_beslut_idx ON utbetalning (beslut_id);
CREATE INDEX IF NOT EXISTS utbetalning_individ_idx ON utbetalning (individ_id);

CREATE TABLE IF NOT EXISTS lakarintyg (
    intyg_id              BIGINT      NOT NULL PRIMARY KEY,
    arende_id             BIGINT      NOT NULL REFERENCES arende (arende_id),
    utfardat              DATE        NOT NULL,
    diagnoskod            VARCHAR(8),
    sjukskrivningsgrad    SMALLINT,
    giltig_from           DATE,
    giltig_tom            DATE,
    funktionsnedsattning  TEXT,
    andrad                TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS lakarintyg_andrad_idx ON lakarintyg (andrad, intyg_id);
CREATE INDEX IF NOT EXISTS lakarintyg_arende_idx ON lakarintyg (arende_id);

-- agi_iu has no foreign key: employers declare by personnummer, not by our internal individ_id.
CREATE TABLE IF NOT EXISTS agi_iu (
    agi_id               BIGINT      NOT NULL PRIMARY KEY,
    ag_id                CHAR(12)    NOT NULL,
    period               CHAR(6)     NOT NULL,
    betalningsmottagare  CHAR(12)    NOT NULL,
    spec_nr              INTEGER,
    kontant_011          INTEGER,
    skatt_001            INTEGER,
    formaner_012         INTEGER,
    franvaro_datum       DATE,
    franvaro_typ         VARCHAR(28),
    andrad               TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS agi_iu_andrad_idx ON agi_iu (andrad, agi_id);
CREATE INDEX IF NOT EXISTS agi_iu_mottagare_idx ON agi_iu (betalningsmottagare, period);
