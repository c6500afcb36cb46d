// Package matomotest creates throw-away Matomo-shaped databases on a real
// MariaDB/MySQL for tests, the demo and the benchmark, and seeds them.
package matomotest

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// Our own DDL for the tables matomod and the simulator touch, written from
// the facts in shared/MATOMO.md (Matomo's core/Db/Schema/Mysql.php): same
// columns, same indexes. TestSchemaMatchesRealMatomo checks it against the
// schema captured from a real install.
var schemaDDL = []string{
	`CREATE TABLE ` + "`{p}site`" + ` (
  idsite int(10) unsigned NOT NULL AUTO_INCREMENT,
  name varchar(90) NOT NULL,
  main_url varchar(255) NOT NULL,
  ts_created timestamp NULL DEFAULT NULL,
  ecommerce tinyint(4) DEFAULT 0,
  sitesearch tinyint(4) DEFAULT 1,
  sitesearch_keyword_parameters text NOT NULL,
  sitesearch_category_parameters text NOT NULL,
  timezone varchar(50) NOT NULL,
  currency char(3) NOT NULL,
  exclude_unknown_urls tinyint(1) DEFAULT 0,
  excluded_ips text NOT NULL,
  excluded_parameters text NOT NULL,
  excluded_user_agents text NOT NULL,
  excluded_referrers text NOT NULL,
  ` + "`group`" + ` varchar(250) NOT NULL,
  type varchar(255) NOT NULL,
  keep_url_fragment tinyint(4) NOT NULL DEFAULT 0,
  creator_login varchar(100) DEFAULT NULL,
  PRIMARY KEY (idsite)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE ` + "`{p}log_visit`" + ` (
  idvisit bigint(10) unsigned NOT NULL AUTO_INCREMENT,
  idsite int(10) unsigned NOT NULL,
  idvisitor binary(8) NOT NULL,
  visit_last_action_time datetime NOT NULL,
  config_id binary(8) NOT NULL,
  location_ip varbinary(16) NOT NULL,
  profilable tinyint(1) DEFAULT NULL,
  user_id varchar(200) DEFAULT NULL,
  visit_first_action_time datetime NOT NULL,
  visit_goal_buyer tinyint(1) DEFAULT NULL,
  visit_goal_converted tinyint(1) DEFAULT NULL,
  visitor_returning tinyint(1) DEFAULT NULL,
  visitor_seconds_since_first int(11) unsigned DEFAULT NULL,
  visitor_seconds_since_order int(11) unsigned DEFAULT NULL,
  visitor_count_visits int(11) unsigned NOT NULL DEFAULT 0,
  visit_entry_idaction_name int(10) unsigned DEFAULT NULL,
  visit_entry_idaction_url int(11) unsigned DEFAULT NULL,
  visit_exit_idaction_name int(10) unsigned DEFAULT NULL,
  visit_exit_idaction_url int(10) unsigned DEFAULT 0,
  visit_total_actions int(11) unsigned DEFAULT NULL,
  visit_total_interactions mediumint(8) unsigned DEFAULT 0,
  visit_total_searches smallint(5) unsigned DEFAULT NULL,
  referer_keyword varchar(255) DEFAULT NULL,
  referer_name varchar(255) DEFAULT NULL,
  referer_type tinyint(1) unsigned DEFAULT NULL,
  referer_url varchar(1500) DEFAULT NULL,
  location_browser_lang varchar(20) DEFAULT NULL,
  config_browser_engine varchar(10) DEFAULT NULL,
  config_browser_name varchar(40) DEFAULT NULL,
  config_browser_version varchar(20) DEFAULT NULL,
  config_client_type tinyint(1) DEFAULT NULL,
  config_device_brand varchar(100) DEFAULT NULL,
  config_device_model varchar(100) DEFAULT NULL,
  config_device_type tinyint(100) DEFAULT NULL,
  config_os char(3) DEFAULT NULL,
  config_os_version varchar(100) DEFAULT NULL,
  visit_total_events int(11) unsigned DEFAULT NULL,
  visitor_localtime time DEFAULT NULL,
  visitor_seconds_since_last int(11) unsigned DEFAULT NULL,
  config_resolution varchar(18) DEFAULT NULL,
  config_cookie tinyint(1) DEFAULT NULL,
  config_flash tinyint(1) DEFAULT NULL,
  config_java tinyint(1) DEFAULT NULL,
  config_pdf tinyint(1) DEFAULT NULL,
  config_quicktime tinyint(1) DEFAULT NULL,
  config_realplayer tinyint(1) DEFAULT NULL,
  config_silverlight tinyint(1) DEFAULT NULL,
  config_windowsmedia tinyint(1) DEFAULT NULL,
  visit_total_time int(11) unsigned NOT NULL,
  location_city varchar(255) DEFAULT NULL,
  location_country char(3) DEFAULT NULL,
  location_latitude decimal(9,6) DEFAULT NULL,
  location_longitude decimal(9,6) DEFAULT NULL,
  location_region char(3) DEFAULT NULL,
  last_idlink_va bigint(20) unsigned DEFAULT NULL,
  custom_dimension_1 varchar(255) DEFAULT NULL,
  custom_dimension_2 varchar(255) DEFAULT NULL,
  custom_dimension_3 varchar(255) DEFAULT NULL,
  custom_dimension_4 varchar(255) DEFAULT NULL,
  custom_dimension_5 varchar(255) DEFAULT NULL,
  PRIMARY KEY (idvisit),
  KEY index_idsite_config_datetime (idsite, config_id, visit_last_action_time),
  KEY index_idsite_datetime (idsite, visit_last_action_time),
  KEY index_idsite_idvisitor_time (idsite, idvisitor, visit_last_action_time DESC)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE ` + "`{p}option`" + ` (
  option_name varchar(191) NOT NULL,
  option_value longtext NOT NULL,
  autoload tinyint(4) NOT NULL DEFAULT 1,
  PRIMARY KEY (option_name),
  KEY autoload (autoload)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE ` + "`{p}archive_invalidations`" + ` (
  idinvalidation bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  idarchive int(10) unsigned DEFAULT NULL,
  name varchar(255) NOT NULL,
  idsite int(10) unsigned NOT NULL,
  date1 date NOT NULL,
  date2 date NOT NULL,
  period tinyint(3) unsigned NOT NULL,
  ts_invalidated datetime DEFAULT NULL,
  ts_started datetime DEFAULT NULL,
  status tinyint(1) unsigned DEFAULT 0,
  report varchar(255) DEFAULT NULL,
  PRIMARY KEY (idinvalidation),
  KEY index_idsite_dates_period_name (idsite, date1, period)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE ` + "`{p}sequence`" + ` (
  name varchar(120) NOT NULL,
  value bigint(20) unsigned NOT NULL,
  PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE ` + "`{p}locks`" + ` (
  ` + "`key`" + ` varchar(70) NOT NULL,
  value varchar(255) DEFAULT NULL,
  expiry_time bigint(20) unsigned DEFAULT 9999999999,
  PRIMARY KEY (` + "`key`" + `)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
}

// SegmentDDL is the segment table of testdata/fixtures/schema.sql (a real
// Matomo 5.0.2 install). It is not part of the default schema: a trimmed
// schema without it is a case matomod handles (no stored segments).
const SegmentDDL = `CREATE TABLE IF NOT EXISTS {p}segment (
  idsegment int(11) NOT NULL AUTO_INCREMENT,
  name varchar(255) NOT NULL,
  definition text NOT NULL,
  hash char(32) DEFAULT NULL,
  login varchar(100) NOT NULL,
  enable_all_users tinyint(4) NOT NULL DEFAULT 0,
  enable_only_idsite int(11) DEFAULT NULL,
  auto_archive tinyint(4) NOT NULL DEFAULT 0,
  ts_created timestamp NULL DEFAULT NULL,
  ts_last_edit timestamp NULL DEFAULT NULL,
  deleted tinyint(4) NOT NULL DEFAULT 0,
  PRIMARY KEY (idsegment)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`

// archiveDDL is a monthly archive table: numeric tables hold doubles and
// have index_idsite_dates_period, blob tables hold mediumblobs.
func archiveDDL(table string, numeric bool) string {
	value, idx := "mediumblob", ""
	if numeric {
		value, idx = "double", "\n  KEY index_idsite_dates_period (idsite, date1, date2, period, name(6)),"
	}
	return "CREATE TABLE IF NOT EXISTS `" + table + "` (" + `
  idarchive int(10) unsigned NOT NULL,
  name varchar(190) NOT NULL,
  idsite int(10) unsigned DEFAULT NULL,
  date1 date DEFAULT NULL,
  date2 date DEFAULT NULL,
  period tinyint(3) unsigned DEFAULT NULL,
  ts_archived datetime DEFAULT NULL,
  value ` + value + ` DEFAULT NULL,
  PRIMARY KEY (idarchive, name),` + idx + `
  KEY index_period_archived (period, ts_archived)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`
}

// CreateSchema creates Matomo's base tables with the given prefix.
func CreateSchema(ctx context.Context, db *sql.DB, prefix string) error {
	for _, ddl := range schemaDDL {
		if _, err := db.ExecContext(ctx, strings.ReplaceAll(ddl, "{p}", prefix)); err != nil {
			return fmt.Errorf("creating schema: %w", err)
		}
	}
	return nil
}

// ArchiveTableNames returns the numeric and blob table names (with prefix)
// for the month of date1 (YYYY, MM).
func ArchiveTableNames(prefix string, year, month int) (numeric, blob string) {
	s := fmt.Sprintf("%04d_%02d", year, month)
	return prefix + "archive_numeric_" + s, prefix + "archive_blob_" + s
}

// CreateArchiveTables creates the monthly pair if missing, as Matomo does
// lazily.
func CreateArchiveTables(ctx context.Context, db *sql.DB, prefix string, year, month int) error {
	n, b := ArchiveTableNames(prefix, year, month)
	if _, err := db.ExecContext(ctx, archiveDDL(n, true)); err != nil {
		return fmt.Errorf("creating %s: %w", n, err)
	}
	if _, err := db.ExecContext(ctx, archiveDDL(b, false)); err != nil {
		return fmt.Errorf("creating %s: %w", b, err)
	}
	return nil
}
