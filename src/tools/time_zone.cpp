// The caller's likely time zone from the number's country calling code, and
// times shown in it.
#include <glib.h>

#include <array>
#include <string_view>

#include "store/phone.h"
#include "tools/handlers.h"
#include "tools/tools.h"

namespace vb {
namespace {

struct CountryZone {
  std::string_view calling_code;
  const char* zone;
};

// One zone per calling code: the most populous one where a country spans several.
constexpr std::array kCountryZones = {
    CountryZone{"1", "America/New_York"},        CountryZone{"7", "Europe/Moscow"},
    CountryZone{"20", "Africa/Cairo"},           CountryZone{"27", "Africa/Johannesburg"},
    CountryZone{"30", "Europe/Athens"},          CountryZone{"31", "Europe/Amsterdam"},
    CountryZone{"32", "Europe/Brussels"},        CountryZone{"33", "Europe/Paris"},
    CountryZone{"34", "Europe/Madrid"},          CountryZone{"36", "Europe/Budapest"},
    CountryZone{"39", "Europe/Rome"},            CountryZone{"40", "Europe/Bucharest"},
    CountryZone{"41", "Europe/Zurich"},          CountryZone{"43", "Europe/Vienna"},
    CountryZone{"44", "Europe/London"},          CountryZone{"45", "Europe/Copenhagen"},
    CountryZone{"46", "Europe/Stockholm"},       CountryZone{"47", "Europe/Oslo"},
    CountryZone{"48", "Europe/Warsaw"},          CountryZone{"49", "Europe/Berlin"},
    CountryZone{"51", "America/Lima"},           CountryZone{"52", "America/Mexico_City"},
    CountryZone{"53", "America/Havana"},         CountryZone{"54", "America/Argentina/Buenos_Aires"},
    CountryZone{"55", "America/Sao_Paulo"},      CountryZone{"56", "America/Santiago"},
    CountryZone{"57", "America/Bogota"},         CountryZone{"58", "America/Caracas"},
    CountryZone{"60", "Asia/Kuala_Lumpur"},      CountryZone{"61", "Australia/Sydney"},
    CountryZone{"62", "Asia/Jakarta"},           CountryZone{"63", "Asia/Manila"},
    CountryZone{"64", "Pacific/Auckland"},       CountryZone{"65", "Asia/Singapore"},
    CountryZone{"66", "Asia/Bangkok"},           CountryZone{"81", "Asia/Tokyo"},
    CountryZone{"82", "Asia/Seoul"},             CountryZone{"84", "Asia/Ho_Chi_Minh"},
    CountryZone{"86", "Asia/Shanghai"},          CountryZone{"90", "Europe/Istanbul"},
    CountryZone{"91", "Asia/Kolkata"},           CountryZone{"92", "Asia/Karachi"},
    CountryZone{"94", "Asia/Colombo"},           CountryZone{"98", "Asia/Tehran"},
    CountryZone{"212", "Africa/Casablanca"},     CountryZone{"213", "Africa/Algiers"},
    CountryZone{"216", "Africa/Tunis"},          CountryZone{"221", "Africa/Dakar"},
    CountryZone{"225", "Africa/Abidjan"},        CountryZone{"233", "Africa/Accra"},
    CountryZone{"234", "Africa/Lagos"},          CountryZone{"237", "Africa/Douala"},
    CountryZone{"251", "Africa/Addis_Ababa"},    CountryZone{"254", "Africa/Nairobi"},
    CountryZone{"255", "Africa/Dar_es_Salaam"},  CountryZone{"256", "Africa/Kampala"},
    CountryZone{"351", "Europe/Lisbon"},         CountryZone{"352", "Europe/Luxembourg"},
    CountryZone{"353", "Europe/Dublin"},         CountryZone{"354", "Atlantic/Reykjavik"},
    CountryZone{"358", "Europe/Helsinki"},       CountryZone{"359", "Europe/Sofia"},
    CountryZone{"370", "Europe/Vilnius"},        CountryZone{"371", "Europe/Riga"},
    CountryZone{"372", "Europe/Tallinn"},        CountryZone{"380", "Europe/Kyiv"},
    CountryZone{"381", "Europe/Belgrade"},       CountryZone{"385", "Europe/Zagreb"},
    CountryZone{"386", "Europe/Ljubljana"},      CountryZone{"420", "Europe/Prague"},
    CountryZone{"421", "Europe/Bratislava"},     CountryZone{"502", "America/Guatemala"},
    CountryZone{"503", "America/El_Salvador"},   CountryZone{"504", "America/Tegucigalpa"},
    CountryZone{"505", "America/Managua"},       CountryZone{"506", "America/Costa_Rica"},
    CountryZone{"507", "America/Panama"},        CountryZone{"591", "America/La_Paz"},
    CountryZone{"593", "America/Guayaquil"},     CountryZone{"595", "America/Asuncion"},
    CountryZone{"598", "America/Montevideo"},    CountryZone{"852", "Asia/Hong_Kong"},
    CountryZone{"880", "Asia/Dhaka"},            CountryZone{"886", "Asia/Taipei"},
    CountryZone{"961", "Asia/Beirut"},           CountryZone{"962", "Asia/Amman"},
    CountryZone{"965", "Asia/Kuwait"},           CountryZone{"966", "Asia/Riyadh"},
    CountryZone{"971", "Asia/Dubai"},            CountryZone{"972", "Asia/Jerusalem"},
    CountryZone{"974", "Asia/Qatar"},
};

GDateTime* local_date_time(int64_t unix_time, const std::string& time_zone) {
  g_autoptr(GTimeZone) zone = g_time_zone_new_identifier(time_zone.c_str());
  if (!zone)
    zone = g_time_zone_new_utc();
  g_autoptr(GDateTime) utc = g_date_time_new_from_unix_utc(unix_time);
  return g_date_time_to_timezone(utc, zone);
}

}  // namespace

std::string caller_time_zone(const std::string& phone_number, const std::string& configured) {
  if (!configured.empty())
    return configured;
  auto digits = normalized_phone_number(phone_number);
  if (!digits)
    return "UTC";
  // Calling codes are prefix-free, so the first match is the only one.
  for (const auto& entry : kCountryZones)
    if (std::string_view(*digits).starts_with(entry.calling_code))
      return entry.zone;
  return "UTC";
}

namespace tools {

std::string iso_local_time(int64_t unix_time, const std::string& time_zone) {
  g_autoptr(GDateTime) local = local_date_time(unix_time, time_zone);
  g_autofree char* text = g_date_time_format(local, "%Y-%m-%dT%H:%M:%S%:z");
  return text;
}

std::string spoken_local_time(int64_t unix_time, const std::string& time_zone) {
  static constexpr const char* kDays[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
  g_autoptr(GDateTime) local = local_date_time(unix_time, time_zone);
  g_autofree char* text = g_date_time_format(local, "%Y-%m-%d %H:%M");
  return std::string(kDays[g_date_time_get_day_of_week(local) - 1]) + " " + text;  // locale-independent
}

}  // namespace tools
}  // namespace vb
