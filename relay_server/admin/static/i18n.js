// Japanese and English for the fleet page and its login. No build step: plain script, loaded before the page's.
"use strict";
const FLEET_TEXT = {
  ja: {
    title: "端末の状態", login_title: "端末の状態 — ログイン", user: "ユーザー名", password: "パスワード",
    login: "ログイン", logout: "ログアウト", lang_other: "English",
    err_wrong: "ユーザー名またはパスワードが違います。", err_locked: "失敗が続いたため一時的にロックされています。しばらくしてからもう一度。",
    err_demo_remote: "デモ用アカウントはこのパソコンからのみ使えます。",
    live: "リアルタイム更新中", offline_link: "接続が切れました。再接続中…",
    today: "今日", calls: "呼び出し", answered: "応答", missed: "不在", median_wait: "待ち時間(中央値)",
    problems: "問題のある端末", terminals: "端末", live_calls: "通話中・呼び出し中", no_calls: "現在、通話はありません。",
    charts: "月別の集計", month: "月", csv: "CSV ダウンロード", audit: "操作の記録",
    role: "種類", name: "名前", state: "状態", since: "から", address: "アドレス", version: "バージョン",
    rtt: "往復時間", devices: "機器", station_status: "受付", actions: "操作",
    counter: "相談ブース", office: "職員端末", lamp: "表示灯",
    online: "オンライン", offline: "オフライン", available: "受付中", away: "離席",
    ok: "正常", missing: "見つからない", failing: "故障",
    camera: "カメラ", document_camera: "書画カメラ", microphone: "マイク", speaker: "スピーカー",
    lamp_port: "表示灯ポート", ring_test: "呼び出し音テスト", light: "点灯", disconnect: "切断",
    confirm_disconnect: "この端末を切断しますか？(端末は自動で再接続します)",
    department: "課", counter_col: "ブース", members: "参加者", call_state: "状態", duration: "時間",
    media_path: "映像の経路", ringing: "呼び出し中", active: "通話中", last_call: "前回の通話",
    answered_pct: "応答率", wait_p50: "待ち 中央値", wait_p90: "待ち 90%", duration_median: "通話時間 中央値",
    per_day: "日別", calls_chart: "日別の呼び出し件数", wait_chart: "日別の待ち時間 (秒)", duration_chart: "日別の通話時間 (秒)",
    when: "日時", who: "誰が", what: "操作", target: "対象", result: "結果", sent: "送信しました",
    no_health: "未報告", seconds: "秒", history: "履歴", before: "変更前", after: "変更後", item: "項目", no_data: "この月の記録はありません。",
    action_login: "ログイン", action_logout: "ログアウト", action_lamp: "表示灯の点灯", action_ring: "呼び出し音テスト",
    action_disconnect: "切断",
  },
  en: {
    title: "Fleet", login_title: "Fleet — log in", user: "User", password: "Password",
    login: "Log in", logout: "Log out", lang_other: "日本語",
    err_wrong: "Wrong user name or password.", err_locked: "Locked after repeated failures. Try again later.",
    err_demo_remote: "The demo account works only from this computer.",
    live: "Live", offline_link: "Connection lost; reconnecting…",
    today: "Today", calls: "Calls", answered: "Answered", missed: "Missed", median_wait: "Median wait",
    problems: "Terminals with problems", terminals: "Terminals", live_calls: "Live calls", no_calls: "No calls right now.",
    charts: "Monthly charts", month: "Month", csv: "Download CSV", audit: "Audit log",
    role: "Role", name: "Name", state: "State", since: "since", address: "Address", version: "Version",
    rtt: "Round trip", devices: "Devices", station_status: "Station", actions: "Actions",
    counter: "Counter", office: "Station", lamp: "Lamp",
    online: "online", offline: "offline", available: "available", away: "away",
    ok: "ok", missing: "missing", failing: "failing",
    camera: "Camera", document_camera: "Document camera", microphone: "Microphone", speaker: "Speaker",
    lamp_port: "Lamp port", ring_test: "Test ring", light: "Light", disconnect: "Disconnect",
    confirm_disconnect: "Disconnect this terminal? (It reconnects by itself.)",
    department: "Department", counter_col: "Counter", members: "Members", call_state: "State", duration: "Duration",
    media_path: "Media path", ringing: "ringing", active: "answered", last_call: "Last call",
    answered_pct: "Answered", wait_p50: "Wait median", wait_p90: "Wait p90", duration_median: "Duration median",
    per_day: "per day", calls_chart: "Calls per day", wait_chart: "Wait per day (s)", duration_chart: "Call duration per day (s)",
    when: "When", who: "Who", what: "Action", target: "Target", result: "Result", sent: "sent",
    no_health: "not reported", seconds: "s", history: "History", before: "Before", after: "After", item: "What", no_data: "No calls this month.",
    action_login: "log in", action_logout: "log out", action_lamp: "light lamp", action_ring: "test ring",
    action_disconnect: "disconnect",
  },
};

function fleetLang() {
  const saved = localStorage.getItem("fleet-lang");
  if (saved === "ja" || saved === "en") return saved;
  return (navigator.language || "ja").toLowerCase().startsWith("en") ? "en" : "ja";
}

function t(key) {
  const table = FLEET_TEXT[fleetLang()];
  return key in table ? table[key] : key;
}

function applyText(root) {
  document.documentElement.lang = fleetLang();
  for (const el of (root || document).querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
}

function toggleLang() {
  localStorage.setItem("fleet-lang", fleetLang() === "ja" ? "en" : "ja");
}
