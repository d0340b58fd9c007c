-- Small reference tables: the 27 federative units (IBGE codes), measurement units, equipment
-- types, file types, detector, site types. Idempotent (INSERT IGNORE on the primary key).
-- The 5,570 municipalities and their seat coordinates are loaded by
-- `appcataloga refdata load DIR` instead (they are too large to keep in a migration).

INSERT IGNORE INTO {RFDATA}.DIM_SITE_STATE (ID_STATE, NA_STATE, LC_STATE) VALUES
    (11, 'Rondônia', 'RO'), (12, 'Acre', 'AC'), (13, 'Amazonas', 'AM'), (14, 'Roraima', 'RR'),
    (15, 'Pará', 'PA'), (16, 'Amapá', 'AP'), (17, 'Tocantins', 'TO'), (21, 'Maranhão', 'MA'),
    (22, 'Piauí', 'PI'), (23, 'Ceará', 'CE'), (24, 'Rio Grande do Norte', 'RN'),
    (25, 'Paraíba', 'PB'), (26, 'Pernambuco', 'PE'), (27, 'Alagoas', 'AL'), (28, 'Sergipe', 'SE'),
    (29, 'Bahia', 'BA'), (31, 'Minas Gerais', 'MG'), (32, 'Espírito Santo', 'ES'),
    (33, 'Rio de Janeiro', 'RJ'), (35, 'São Paulo', 'SP'), (41, 'Paraná', 'PR'),
    (42, 'Santa Catarina', 'SC'), (43, 'Rio Grande do Sul', 'RS'), (50, 'Mato Grosso do Sul', 'MS'),
    (51, 'Mato Grosso', 'MT'), (52, 'Goiás', 'GO'), (53, 'Distrito Federal', 'DF');

INSERT IGNORE INTO {RFDATA}.DIM_SPECTRUM_UNIT (ID_MEASURE_UNIT, NA_MEASURE_UNIT) VALUES
    (1, 'dBm'), (2, 'dBμV/m'), (3, 'μV/m'), (4, 'V/m'), (5, 'A/m'), (6, 'W/m²');

INSERT IGNORE INTO {RFDATA}.DIM_EQUIPMENT_TYPE (ID_EQUIPMENT_TYPE, NA_EQUIPMENT_TYPE, NA_EQUIPMENT_TYPE_UID) VALUES
    (1, 'CRFS / RFEye Node 20-6', 'rfeye'), (2, 'CRFS / Antenna ACC', 'acc_ant'),
    (3, 'Rohde&Schwarz / ETM EB500', 'etm'), (4, 'TCI / MIAer 4046', 'miaer'),
    (5, 'Rohde&Schwarz / FSL6', 'fsl6'), (6, 'Rohde&Schwarz / FSVR', 'fsvr'),
    (7, 'Rohde&Schwarz / FSW', 'fsw'), (8, 'Anritsu / MS2720T', 'ms2720t'),
    (9, 'Tektronix / SA2500', 'sa2500'), (10, 'Agilent / N9344C', 'n9344c'),
    (11, 'Rohde&Schwarz / UMS300', 'ums300'), (12, 'Celtec / CelWireless', 'cwsm');

INSERT IGNORE INTO {RFDATA}.DIM_FILE_TYPE (ID_TYPE_FILE, NA_TYPE_FILE, NA_EQUIPMENT) VALUES
    (1, 'CRFS Logger BIN', 'rfeye'), (2, 'appColeta BIN', 'others'), (3, 'Mat dBm', 'cwsm');

INSERT IGNORE INTO {RFDATA}.DIM_SPECTRUM_DETECTOR (ID_DETECTOR, NA_DETECTOR) VALUES (1, 'RMS');

INSERT IGNORE INTO {RFDATA}.DIM_SITE_TYPE (ID_TYPE, NA_TYPE) VALUES (1, 'point'), (2, 'route'), (3, 'area');
