"""Raw headers of real cameras, written by us from each camera's documented header conventions.

Each builder returns a primary header (a dict) of one detector of one exposure taken
at ``utc`` (ISO, UTC); the values are made up, the cards and their formats are the
cameras'.  Used by tests/test_cameras.py and benchmarks/bench_ingest.py.
"""

from __future__ import annotations

from typing import Any

from astropy.time import Time, TimeDelta


def _subaru(utc: str, exptime: float) -> dict[str, Any]:
    begin = Time(utc, scale="utc")
    end = begin + TimeDelta(exptime, format="sec")
    return {
        "TELESCOP": "Subaru", "OBSERVAT": "NAOJ", "DATE-OBS": begin.strftime("%Y-%m-%d"),
        "UT-STR": begin.strftime("%H:%M:%S.%f")[:12], "UT-END": end.strftime("%H:%M:%S.%f")[:12],
        "UT": begin.strftime("%H:%M:%S.%f")[:12], "MJD-STR": begin.mjd, "MJD-END": end.mjd, "MJD": begin.mjd,
        "EXPTIME": exptime, "OBS-ALOC": "Observation", "OUT-TMP": 275.15, "OUT-HUM": 20.0, "OUT-PRS": 620.0,
        "RA2000": "10:00:28.600", "DEC2000": "+02:12:21.00", "AZIMUTH": 200.0, "ALTITUDE": 60.0, "AIRMASS": 1.154,
        "INR-STR": 40.0, "INST-PA": "90.000", "FOC-VAL": 3.5, "OBJECT": "COSMOS", "PROP-ID": "o24001",
    }  # fmt: skip


def hsc(utc: str = "2024-03-01T06:00:00", detector: int = 50, filt: str = "HSC-r2", exposure: int = 904024,
        obstype: str = "OBJECT", exptime: float = 30.0) -> dict[str, Any]:
    """Hyper Suprime-Cam: EXP-ID ``HSCE`` + exposure (8 digits), DET-ID, FILTER01, DATA-TYP."""
    return {
        "SIMPLE": True, "BITPIX": 16, "NAXIS": 0, "INSTRUME": "Hyper Suprime-Cam",
        **_subaru(utc, exptime), "EXP-ID": f"HSCE{exposure:08d}", "FRAMEID": f"HSCA{exposure * 100 + detector:08d}",
        "DET-ID": detector, "T_CCDSN": str(100 + detector), "FILTER01": filt, "DATA-TYP": obstype,
    }  # fmt: skip


def suprimecam(utc: str = "2008-03-01T06:00:00", detector: int = 7, filt: str = "W-S-I+", exposure: int = 40535,
               obstype: str = "OBJECT", exptime: float = 120.0) -> dict[str, Any]:
    """Suprime-Cam: EXP-ID ``SUPE`` + exposure (7 digits) + ``0``, FRAMEID ``SUPA`` + exposure + DET-ID."""
    return {
        "SIMPLE": True, "BITPIX": 16, "NAXIS": 0, "INSTRUME": "SuprimeCam",
        **_subaru(utc, exptime), "EXP-ID": f"SUPE{exposure:07d}0", "FRAMEID": f"SUPA{exposure:07d}{detector}",
        "DET-ID": detector, "FILTER01": filt, "DATA-TYP": obstype,
    }  # fmt: skip


def decam(utc: str = "2024-03-01T03:00:00", detector: int = 25, filt: str = "r DECam SDSS c0002 6415.0 1480.0",
          exposure: int = 1234567, obstype: str = "object", exptime: float = 90.0) -> dict[str, Any]:
    """DECam: EXPNUM, CCDNUM/DETPOS, FILTER (full wheel name), DATE-OBS (UTC), OBSTYPE, TELRA/TELDEC."""
    begin = Time(utc, scale="utc")
    names = {25: "S1", 1: "S29", 32: "N1", 62: "N31", 61: "N30"}
    return {
        "SIMPLE": True, "BITPIX": 16, "NAXIS": 0, "INSTRUME": "DECam", "TELESCOP": "CTIO 4.0-m telescope",
        "OBSERVAT": "CTIO", "OBS-LAT": "-30.16606", "OBS-LONG": "70.81489", "OBS-ELEV": 2215.0,
        "DATE-OBS": begin.isot, "TIME-OBS": begin.strftime("%H:%M:%S.%f"), "MJD-OBS": begin.mjd, "TIMESYS": "UTC",
        "EXPNUM": exposure, "OBSID": f"ct4m{begin.strftime('%Y%m%dt%H%M%S')}", "OBSTYPE": obstype,
        "EXPTIME": exptime, "DARKTIME": exptime + 1.1, "FILTER": filt, "CCDNUM": detector,
        "DETPOS": names.get(detector, "S1"), "OBJECT": "DES survey hex", "PROPID": "2012B-0001",
        "TELRA": "10:00:28.600", "TELDEC": "02:12:21.00", "TELEQUIN": 2000.0, "RADESYS": "ICRS",
        "HA": "00:10:00.000", "ZD": 30.0, "AZ": 10.0, "AIRMASS": 1.15, "HUMIDITY": 20.0, "PRESSURE": 780.0,
        "OUTTEMP": 12.0, "TELFOCUS": "1.0,2.0,3.0,4.0,5.0,6.0",
    }  # fmt: skip


def megaprime(utc: str = "2015-03-01T08:00:00", detector: int = 14, filt: str = "r.MP9602", exposure: int = 1849375,
              obstype: str = "OBJECT", exptime: float = 300.0) -> dict[str, Any]:
    """MegaCam: EXPNUM, EXTNAME ``ccdNN`` of the detector's extension, FILTER, DATE-OBS/UTC-OBS, OBSTYPE."""
    begin = Time(utc, scale="utc")
    return {
        "SIMPLE": True, "BITPIX": 16, "NAXIS": 0, "INSTRUME": "MegaPrime", "TELESCOP": "CFHT 3.6m",
        "DATE-OBS": begin.strftime("%Y-%m-%d"), "UTC-OBS": begin.strftime("%H:%M:%S.%f")[:12], "MJD-OBS": begin.mjd,
        "EXPNUM": exposure, "OBSID": f"{exposure}o", "OBSTYPE": obstype, "EXPTIME": exptime,
        "DARKTIME": exptime + 1.0, "FILTER": filt,
        "EXTNAME": f"ccd{detector:02d}", "OBJECT": "D3", "RUNID": "15AP01", "RA_DEG": 214.9, "DEC_DEG": 52.7,
        "RA": "14:19:36.00", "DEC": "+52:42:00.0", "RADECSYS": "FK5", "EQUINOX": 2000.0, "TELALT": 60.0,
        "TELAZ": 20.0, "AIRMASS": 1.15, "LATITUDE": 19.825252, "LONGITUD": -155.468876, "PRESSURE": 615.0,
        "RELHUMID": 20.0, "TEMPERAT": 2.0, "ROTANGLE": 0.0,
    }  # fmt: skip


def sdss(utc: str = "2006-10-01T05:00:00", camcol: int = 4, filt: str = "g", run: int = 6377) -> dict[str, Any]:
    """SDSS imaging (drift scan): ORIGIN, CCDMODE DRIFT, CAMCOL + FILTER make the detector."""
    begin = Time(utc, scale="utc")
    return {
        "SIMPLE": True, "BITPIX": 16, "NAXIS": 0, "ORIGIN": "SDSS", "TELESCOP": "2.5m", "CCDMODE": "DRIFT",
        "CAMCOL": camcol, "FILTER": filt, "RUN": run, "FRAME": 399, "DATE-OBS": begin.tai.strftime("%Y-%m-%d"),
        "TAIHMS": begin.tai.strftime("%H:%M:%S.%f")[:11], "TAI": (begin.tai.mjd * 86400.0), "EXPTIME": 53.907456,
        "FLAVOR": "science", "OBJECT": "82 N", "RA": 15.0, "DEC": 1.0, "SPA": 90.0, "ALT": 60.0, "AZ": 120.0,
        "AIRMASS": 1.15, "CCDLOC": 42, "MJD": int(begin.mjd),
    }  # fmt: skip


def _rubin(instrument: str, prefix: str, utc: str, raft: str, slot: str, filt: str, day_obs: int, seq: int,
           imgtype: str, exptime: float) -> dict[str, Any]:
    begin = Time(utc, scale="utc").tai
    end = begin + TimeDelta(exptime, format="sec")
    return {
        "SIMPLE": True, "BITPIX": 16, "NAXIS": 0, "EXTEND": True, "INSTRUME": instrument,
        "TELESCOP": "Simonyi Survey Telescope", "TIMESYS": "TAI", "DATE-BEG": begin.isot, "DATE-END": end.isot,
        "MJD-BEG": begin.mjd, "MJD-END": end.mjd, "MJD-OBS": begin.mjd, "DAYOBS": str(day_obs), "SEQNUM": seq,
        "CONTRLLR": "O", "OBSID": f"{prefix}_O_{day_obs}_{seq:06d}", "GROUPID": f"{begin.isot[:19]}",
        "IMGTYPE": imgtype, "REASON": "survey", "PROGRAM": "BLOCK-365", "OBJECT": "lowdust", "EXPTIME": exptime,
        "DARKTIME": exptime + 0.9, "RAFTBAY": raft, "CCDSLOT": slot, "LSST_NUM": "ITL-3800C-000",
        "FILTER": filt, "FILTBAND": filt.split("_")[0], "RA": 150.1, "DEC": -2.2, "RADESYS": "ICRS",
        "ROTPA": 30.0, "AZSTART": 100.0, "ELSTART": 70.0, "AMSTART": 1.064,
        "OBS-LONG": -70.749417, "OBS-LAT": -30.244639, "OBS-ELEV": 2663.0,
        "AIRTEMP": 12.5, "PRESSURE": 742.0, "HUMIDITY": 25.0,
    }  # fmt: skip


def lsstcam(utc: str = "2025-06-01T03:00:00", raft: str = "R22", slot: str = "S11", filt: str = "r_57",
            day_obs: int = 20250531, seq: int = 123, imgtype: str = "science", exptime: float = 30.0) -> dict[str, Any]:
    """LSSTCam: DAYOBS/SEQNUM, RAFTBAY/CCDSLOT, FILTER, IMGTYPE, MJD-BEG/MJD-END (TAI)."""
    return _rubin("LSSTCam", "MC", utc, raft, slot, filt, day_obs, seq, imgtype, exptime)


def lsstcomcam(utc: str = "2024-11-20T03:00:00", slot: str = "S11", filt: str = "i_06", day_obs: int = 20241119,
               seq: int = 45, imgtype: str = "science", exptime: float = 30.0) -> dict[str, Any]:
    """LSSTComCam: one raft (R22)."""
    return _rubin("LSSTComCam", "CC", utc, "R22", slot, filt, day_obs, seq, imgtype, exptime)


def latiss(utc: str = "2023-09-01T02:00:00", filt: str = "SDSSr_65mm", grating: str = "empty", day_obs: int = 20230831,
           seq: int = 300, imgtype: str = "science", exptime: float = 30.0) -> dict[str, Any]:
    """LATISS: one detector, FILTER and GRATING."""
    header = _rubin("LATISS", "AT", utc, "RXX", "S00", filt, day_obs, seq, imgtype, exptime)
    header["TELESCOP"] = "Rubin Auxiliary Telescope"
    header["GRATING"] = grating
    return header
