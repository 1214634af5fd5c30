// The echat web client: plain JavaScript, no build step, talking to the /v1 API of the
// server that served it.
//
// Safety: every text from the server (messages, logins, titles) goes into the page with
// textContent, never as HTML, and the page's Content-Security-Policy forbids inline scripts.
// The session id lives in sessionStorage (this tab, until logout or the tab closes).
//
// Live chat: one WebSocket to the open room. Sent messages carry a nonce and stay "pending"
// until acked; after a dropped connection the client reconnects, fetches what it missed with
// ?after=<the last id it had when the connection was made>, and resends the pending ones with
// the same nonces (the server stores a nonce once). Messages are kept by id and shown in id
// order, so one that arrives both live and from the history is shown once.
"use strict";

const SESSION_KEY = "echat.session";
const ROOM_KEY = "echat.room";
const PAGE = 50;
const CATCH_UP_PAGE = 500;
const RECONNECT_DELAYS_MS = [500, 1000, 2000, 4000, 8000, 10000];
const TYPING_EVERY_MS = 2000;
const TYPING_PAUSE_MS = 3000;
const TYPING_GAP_MS = 600;
const TYPING_SHOWN_MS = 6000;
const FEED_RETRY_MS = 5000;
const FEED_WAIT_S = 25;

const LOGIN_ERRORS = {
  user_not_found: "There is no user with that login.",
  wrong_credentials: "Wrong password.",
  user_already_exists: "That login is taken.",
  invalid_login: "A login is 1 to 64 characters, without control characters.",
  invalid_password: "A password is 1 to 1024 characters.",
  too_many_requests: "Too many failed attempts: wait a minute and try again.",
  forbidden: "This account is disabled.",
};

const state = {
  session: null,
  me: null,
  generation: 0, // bumped at each login and logout: loops of an earlier session stop
  rooms: [],
  users: new Map(), // user id -> login
  picked: new Map(), // user id -> login, for the room about to be made
  room: null, // the open room, see openRoom
};

const $ = (id) => document.getElementById(id);

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class ApiError extends Error {
  constructor(status, code) {
    super(code);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const headers = {};
  if (state.session) headers["X-Session-Id"] = state.session;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch (error) {
    data = null;
  }
  if (!response.ok) {
    const code = data && data.error ? data.error.code : `http_${response.status}`;
    if (response.status === 401 && state.session && path !== "/v1/logout") endSession();
    throw new ApiError(response.status, code);
  }
  return data;
}

function newNonce() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// -- logging in and out ------------------------------------------------------------------

async function signIn(kind) {
  const login = $("login-name").value;
  const password = $("login-password").value;
  $("login-error").textContent = "";
  try {
    const answer = await api("POST", `/v1/${kind}`, { login, password });
    sessionStorage.setItem(SESSION_KEY, answer.session_id);
    state.session = answer.session_id;
    $("login-password").value = "";
    await start();
  } catch (error) {
    $("login-error").textContent = LOGIN_ERRORS[error.code] || `Could not ${kind}: ${error.code}`;
  }
}

async function start() {
  state.generation += 1;
  try {
    state.me = await api("GET", "/v1/info");
  } catch (error) {
    if (error.status !== 401) showLogin(`The server did not answer (${error.code}).`);
    return;
  }
  state.users.set(state.me.id, state.me.login);
  $("me").textContent = state.me.login;
  $("login-view").hidden = true;
  $("chat-view").hidden = false;
  await loadRooms();
  watchRooms(state.generation);
  const lastRoom = Number(sessionStorage.getItem(ROOM_KEY));
  if (state.rooms.some((room) => room.id === lastRoom)) await openRoom(lastRoom);
}

async function logout() {
  try {
    await api("POST", "/v1/logout");
  } finally {
    endSession();
  }
}

function endSession() {
  closeRoom();
  sessionStorage.removeItem(SESSION_KEY);
  sessionStorage.removeItem(ROOM_KEY);
  state.session = null;
  state.me = null;
  state.generation += 1;
  state.rooms = [];
  state.picked.clear();
  $("room-list").replaceChildren();
  $("search-results").replaceChildren();
  $("search-input").value = "";
  renderPicked();
  showLogin("");
}

function showLogin(message) {
  $("chat-view").hidden = true;
  $("login-view").hidden = false;
  $("login-error").textContent = message;
  $("login-name").focus();
}

// -- rooms list --------------------------------------------------------------------------

async function loadRooms() {
  const rooms = await api("GET", "/v1/rooms");
  for (const room of rooms) {
    for (const user of room.users) state.users.set(user.id, user.login);
  }
  state.rooms = rooms;
  renderRooms();
}

function roomName(room) {
  if (room.title) return room.title;
  const others = room.users.filter((user) => user.id !== state.me.id);
  if (others.length === 0) return `${state.me.login} (only you)`;
  return others.map((user) => user.login).join(", ");
}

function renderRooms() {
  const items = state.rooms.map((room) => {
    const item = element("li", "room");
    const button = element("button", "room-button");
    button.type = "button";
    button.dataset.roomId = String(room.id);
    button.append(element("span", "room-name", roomName(room)));
    const open = state.room && state.room.id === room.id;
    if (open) item.classList.add("open");
    if (!open && room.unread > 0) button.append(element("span", "unread", String(room.unread)));
    button.addEventListener("click", () => openRoom(room.id));
    item.append(button);
    return item;
  });
  $("room-list").replaceChildren(...items);
}

// New messages in rooms that are not open move the rooms list (order, unread counts): a held
// GET /v1/feed answers as soon as one arrives, and the list is fetched again.
async function watchRooms(generation) {
  let cursor = null;
  while (generation === state.generation) {
    try {
      if (cursor === null) {
        const newest = state.rooms.map((room) => (room.last_message ? room.last_message.id : 0));
        cursor = Math.max(0, ...newest);
      }
      const page = await api("GET", `/v1/feed?after=${cursor}&wait=${FEED_WAIT_S}`);
      cursor = page.cursor;
      if (page.messages.length && generation === state.generation) await loadRooms();
    } catch (error) {
      if (error.status === 401) return;
      await sleep(FEED_RETRY_MS); // offline for now: the next round tries again
    }
  }
}

// -- finding people and making a room ----------------------------------------------------

let searchTimer = null;

async function search() {
  const query = $("search-input").value.trim();
  if (!query) {
    $("search-results").replaceChildren();
    return;
  }
  const found = await api("GET", `/v1/users/?q=${encodeURIComponent(query)}&limit=20`);
  if ($("search-input").value.trim() !== query) return; // typed on meanwhile
  const items = found
    .filter((user) => user.id !== state.me.id)
    .map((user) => {
      state.users.set(user.id, user.login);
      const item = element("li", "person");
      const button = element("button", "add-person", `+ ${user.login}`);
      button.type = "button";
      button.addEventListener("click", () => {
        state.picked.set(user.id, user.login);
        renderPicked();
      });
      item.append(button);
      return item;
    });
  if (items.length === 0) items.push(element("li", "nobody", "Nobody found."));
  $("search-results").replaceChildren(...items);
}

function renderPicked() {
  const items = [...state.picked].map(([id, login]) => {
    const item = element("li", "picked");
    const button = element("button", "remove-person", `${login} ×`);
    button.type = "button";
    button.title = "Remove";
    button.addEventListener("click", () => {
      state.picked.delete(id);
      renderPicked();
    });
    item.append(button);
    return item;
  });
  $("picked").replaceChildren(...items);
  $("new-room").hidden = items.length === 0;
}

async function createRoom() {
  const users = [...state.picked.keys()].map((id) => ({ id }));
  const room = await api("POST", "/v1/rooms", { users });
  state.picked.clear();
  renderPicked();
  $("search-input").value = "";
  $("search-results").replaceChildren();
  await loadRooms();
  await openRoom(room.id);
}

// -- the open room -----------------------------------------------------------------------

async function openRoom(roomId) {
  closeRoom();
  const info = await api("GET", `/v1/rooms/${roomId}`);
  const room = {
    id: roomId,
    info,
    messages: new Map(), // id -> {message, node}
    ids: [], // ascending
    pending: new Map(), // nonce -> {text, node}
    online: new Set(info.online || []),
    typing: new Map(), // user id -> timer
    socket: null,
    wasOpen: false, // a socket of this room was open before: the next one is a reconnect
    attempts: 0,
    reconnectTimer: null,
    hasOlder: true,
    composingSent: 0,
    pauseTimer: null,
    typingState: null,
    typingTimer: null,
    typingFrameAt: 0,
  };
  state.room = room;
  sessionStorage.setItem(ROOM_KEY, String(roomId));
  for (const user of info.users) state.users.set(user.id, user.login);
  $("room-name").textContent = roomName(info);
  $("messages").replaceChildren();
  $("pending-messages").replaceChildren();
  $("typing").textContent = "";
  $("notice").textContent = "";
  $("no-room").hidden = true;
  $("room").hidden = false;
  renderMembers();
  const history = await api("GET", `/v1/rooms/${roomId}/messages?limit=${PAGE}`);
  if (state.room !== room) return;
  for (const message of history) showMessage(room, message);
  room.hasOlder = history.length === PAGE;
  $("older-button").hidden = !room.hasOlder;
  scrollToEnd();
  connect(room);
  markRead(room);
  $("message-input").focus();
}

function closeRoom() {
  const room = state.room;
  if (!room) return;
  state.room = null;
  clearTimeout(room.reconnectTimer);
  clearTimeout(room.pauseTimer);
  clearTimeout(room.typingTimer);
  for (const timer of room.typing.values()) clearTimeout(timer);
  if (room.socket) room.socket.close(1000);
  room.socket = null;
  $("room").hidden = true;
  $("no-room").hidden = false;
}

function renderMembers() {
  const room = state.room;
  const items = room.info.users.map((user) => {
    const online = user.id === state.me.id || room.online.has(user.id);
    const item = element("li", online ? "member online" : "member", user.login);
    item.title = online ? "online" : "offline";
    return item;
  });
  $("room-members").replaceChildren(...items);
}

function setConnectionState(text) {
  $("connection-state").textContent = text;
}

// -- messages ----------------------------------------------------------------------------

function showMessage(room, message) {
  const known = room.messages.get(message.id);
  if (known) {
    // An older copy (a history page read before a live edit) never undoes the edit.
    if ((message.edited_at || "") >= (known.message.edited_at || "")) {
      known.message = message;
      fillMessage(known.node, message);
    }
    return;
  }
  const node = element("li", "message");
  node.dataset.id = String(message.id);
  fillMessage(node, message);
  // Insert in id order: a live message and a page of history can arrive in either order.
  let at = room.ids.length;
  while (at > 0 && room.ids[at - 1] > message.id) at -= 1;
  const next = at < room.ids.length ? room.messages.get(room.ids[at]).node : null;
  $("messages").insertBefore(node, next);
  room.ids.splice(at, 0, message.id);
  room.messages.set(message.id, { message, node });
}

function fillMessage(node, message) {
  const mine = message.user_id === state.me.id;
  node.classList.toggle("mine", mine);
  const meta = element("div", "meta");
  const author = state.users.get(message.user_id) || `user ${message.user_id}`;
  meta.append(element("span", "author", author));
  const created = new Date(`${message.created_at}Z`);
  const clock = created.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const time = element("time", "", clock);
  time.dateTime = `${message.created_at}Z`;
  time.title = created.toLocaleString();
  meta.append(time);
  if (message.edited_at) meta.append(element("span", "edited", "edited"));
  const parts = [meta, element("div", "text", message.text)];
  if (mine) parts.push(messageActions(message));
  node.replaceChildren(...parts);
}

function messageActions(message) {
  const actions = element("div", "actions");
  const edit = element("button", "edit", "Edit");
  edit.type = "button";
  edit.addEventListener("click", () => startEdit(message.id));
  const remove = element("button", "delete", "Delete");
  remove.type = "button";
  let armed = null;
  remove.addEventListener("click", async () => {
    if (!armed) {
      // Two clicks: the first only asks.
      remove.textContent = "Delete?";
      remove.classList.add("armed");
      armed = setTimeout(() => {
        armed = null;
        remove.textContent = "Delete";
        remove.classList.remove("armed");
      }, 4000);
      return;
    }
    clearTimeout(armed);
    await deleteMessage(message.id);
  });
  actions.append(edit, remove);
  return actions;
}

function startEdit(messageId) {
  const room = state.room;
  const known = room && room.messages.get(messageId);
  if (!known) return;
  const form = element("form", "edit-form");
  const input = element("input", "edit-input");
  input.value = known.message.text;
  input.maxLength = 4000;
  const save = element("button", "save", "Save");
  save.type = "submit";
  const cancel = element("button", "cancel secondary", "Cancel");
  cancel.type = "button";
  form.append(input, save, cancel);
  const restore = () => fillMessage(known.node, known.message);
  cancel.addEventListener("click", restore);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape") restore();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value;
    if (!text.trim()) return;
    try {
      const edited = await api("PUT", `/v1/rooms/${room.id}/messages/${messageId}`, { text });
      showMessage(room, edited);
    } catch (error) {
      $("notice").textContent = `Not saved: ${error.code}`;
      restore();
    }
  });
  known.node.querySelector(".text").replaceWith(form);
  known.node.querySelector(".actions").hidden = true;
  input.focus();
}

async function deleteMessage(messageId) {
  const room = state.room;
  try {
    await api("DELETE", `/v1/rooms/${room.id}/messages/${messageId}`);
    removeMessage(room, messageId);
  } catch (error) {
    $("notice").textContent = `Not deleted: ${error.code}`;
  }
}

function removeMessage(room, messageId) {
  const known = room.messages.get(messageId);
  if (!known) return;
  known.node.remove();
  room.messages.delete(messageId);
  room.ids.splice(room.ids.indexOf(messageId), 1);
}

function lastId(room) {
  return room.ids.length ? room.ids[room.ids.length - 1] : 0;
}

async function loadOlder() {
  const room = state.room;
  if (!room || !room.hasOlder || room.ids.length === 0) return;
  const scroller = $("scroller");
  const fromBottom = scroller.scrollHeight - scroller.scrollTop;
  const before = room.ids[0];
  const older = await api("GET", `/v1/rooms/${room.id}/messages?limit=${PAGE}&before=${before}`);
  if (state.room !== room) return;
  for (const message of older) showMessage(room, message);
  room.hasOlder = older.length === PAGE;
  $("older-button").hidden = !room.hasOlder;
  scroller.scrollTop = scroller.scrollHeight - fromBottom; // keep the reader's place
}

function atEnd() {
  const scroller = $("scroller");
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
}

function scrollToEnd() {
  const scroller = $("scroller");
  scroller.scrollTop = scroller.scrollHeight;
}

// -- sending -----------------------------------------------------------------------------

function sendMessage() {
  const room = state.room;
  const input = $("message-input");
  const text = input.value;
  if (!room || !text.trim()) return;
  input.value = "";
  const nonce = newNonce();
  const node = element("li", "message mine pending");
  node.append(element("div", "meta", `${state.me.login} · sending…`), element("div", "text", text));
  $("pending-messages").append(node);
  room.pending.set(nonce, { text, node });
  if (room.socket && room.socket.readyState === WebSocket.OPEN) {
    room.socket.send(JSON.stringify({ text, nonce }));
  }
  clearTimeout(room.pauseTimer);
  room.composingSent = 0;
  scrollToEnd();
}

function typed() {
  const room = state.room;
  if (!room) return;
  const now = Date.now();
  if (now - room.composingSent > TYPING_EVERY_MS) {
    sendTyping(room, "composing");
    room.composingSent = now;
  }
  clearTimeout(room.pauseTimer);
  room.pauseTimer = setTimeout(() => {
    sendTyping(room, "paused");
    room.composingSent = 0;
  }, TYPING_PAUSE_MS);
}

// The server takes at most 2 typing frames a second and drops the rest without a word, so
// frames are spaced TYPING_GAP_MS apart; a later state replaces one still waiting.
function sendTyping(room, typingState) {
  room.typingState = typingState;
  if (room.typingTimer) return;
  const wait = Math.max(0, room.typingFrameAt + TYPING_GAP_MS - Date.now());
  room.typingTimer = setTimeout(() => {
    room.typingTimer = null;
    if (!room.socket || room.socket.readyState !== WebSocket.OPEN) return;
    room.socket.send(JSON.stringify({ type: "typing", state: room.typingState }));
    room.typingFrameAt = Date.now();
  }, wait);
}

// -- the room's socket -------------------------------------------------------------------

function connect(room) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${location.host}/v1/rooms/${room.id}/chat`
    + `?session_id=${encodeURIComponent(state.session)}&events=typing,presence,edit`;
  // What the room had before this connection: everything after it is fetched once the socket
  // is open (frames that arrive meanwhile only move the last id further).
  const since = lastId(room);
  const reconnecting = room.wasOpen;
  const socket = new WebSocket(url);
  room.socket = socket;
  setConnectionState(reconnecting ? "reconnecting…" : "connecting…");
  socket.addEventListener("open", async () => {
    if (room.socket !== socket) return;
    room.attempts = 0;
    room.wasOpen = true;
    setConnectionState("live");
    try {
      await catchUp(room, since, reconnecting);
    } catch (error) {
      // The socket is up; a failed catch-up is retried at the next reconnect.
    }
    if (room.socket !== socket || socket.readyState !== WebSocket.OPEN) return;
    for (const [nonce, pending] of room.pending) {
      socket.send(JSON.stringify({ text: pending.text, nonce }));
    }
  });
  socket.addEventListener("message", (event) => {
    if (room.socket === socket) receive(room, JSON.parse(event.data));
  });
  socket.addEventListener("close", (event) => {
    if (room.socket !== socket) return;
    room.socket = null;
    if (state.room !== room) return;
    setConnectionState("offline, reconnecting…");
    if (event.code === 1000) {
      // This user left the room (from another tab or device).
      closeRoom();
      loadRooms().catch(() => {});
      return;
    }
    const delay = RECONNECT_DELAYS_MS[Math.min(room.attempts, RECONNECT_DELAYS_MS.length - 1)];
    room.attempts += 1;
    const jittered = delay * (0.75 + Math.random() / 2); // clients of one restart spread out
    room.reconnectTimer = setTimeout(() => reconnect(room, event.code), jittered);
  });
}

async function reconnect(room, code) {
  if (state.room !== room) return;
  if (code === 1008) {
    // Logged out elsewhere, or the account was disabled: api() ends the session on a 401.
    try {
      await api("GET", "/v1/info");
    } catch (error) {
      if (error.status === 401) return;
    }
  }
  if (state.room === room && room.socket === null) connect(room);
}

async function catchUp(room, since, reconnecting) {
  // Messages missed while away, in pages, oldest first.
  let after = since;
  for (;;) {
    const query = `limit=${CATCH_UP_PAGE}&after=${after}`;
    const page = await api("GET", `/v1/rooms/${room.id}/messages?${query}`);
    if (state.room !== room) return;
    for (const message of page) showMessage(room, message);
    if (page.length < CATCH_UP_PAGE) break;
    after = page[page.length - 1].id;
  }
  if (reconnecting) {
    // Edits and deletions made while away, for the newest page: a message shown here that is
    // missing from that page's id range has been deleted.
    const newest = await api("GET", `/v1/rooms/${room.id}/messages?limit=${PAGE}`);
    if (state.room !== room || newest.length === 0) return;
    const present = new Set(newest.map((message) => message.id));
    for (const id of [...room.ids]) {
      const inRange = id >= newest[0].id && id <= newest[newest.length - 1].id;
      if (inRange && !present.has(id)) removeMessage(room, id);
    }
    for (const message of newest) if (room.messages.has(message.id)) showMessage(room, message);
  }
  if (atEnd()) scrollToEnd();
  markRead(room);
}

function receive(room, frame) {
  const follow = atEnd();
  if (frame.ack !== undefined) {
    const pending = room.pending.get(frame.ack);
    if (pending) {
      room.pending.delete(frame.ack);
      pending.node.remove();
      showMessage(room, {
        id: frame.id,
        text: pending.text,
        user_id: state.me.id,
        room_id: room.id,
        created_at: frame.created_at,
      });
    }
  } else if (frame.error) {
    $("notice").textContent = frame.error.code === "too_many_requests"
      ? "Slow down: too many messages at once."
      : `The server refused a message: ${frame.error.code}`;
  } else if (frame.type === undefined) {
    showMessage(room, frame);
    stopTyping(room, frame.user_id);
    markRead(room);
  } else if (frame.type === "typing") {
    if (frame.state === "composing") startTyping(room, frame.user_id);
    else stopTyping(room, frame.user_id);
  } else if (frame.type === "presence") {
    if (frame.status === "online") room.online.add(frame.user_id);
    else room.online.delete(frame.user_id);
    renderMembers();
  } else if (frame.type === "edit") {
    if (room.messages.has(frame.message.id)) showMessage(room, frame.message);
  } else if (frame.type === "delete") {
    removeMessage(room, frame.message_id);
  }
  if (follow) scrollToEnd();
}

function startTyping(room, userId) {
  clearTimeout(room.typing.get(userId));
  room.typing.set(userId, setTimeout(() => stopTyping(room, userId), TYPING_SHOWN_MS));
  renderTyping(room);
}

function stopTyping(room, userId) {
  if (!room.typing.has(userId)) return;
  clearTimeout(room.typing.get(userId));
  room.typing.delete(userId);
  renderTyping(room);
}

function renderTyping(room) {
  const names = [...room.typing.keys()].map((id) => state.users.get(id) || `user ${id}`);
  $("typing").textContent = names.length === 0 ? ""
    : `${names.join(", ")} ${names.length === 1 ? "is" : "are"} typing…`;
}

// The read marker moves to the newest message shown (servers without read markers answer
// 404 or 405, and are not asked again).
let readTimer = null;

function markRead(room) {
  const listed = state.rooms.find((entry) => entry.id === room.id);
  if (listed && listed.unread) {
    listed.unread = 0;
    renderRooms();
  }
  if (document.hidden) return;
  clearTimeout(readTimer);
  readTimer = setTimeout(async () => {
    const messageId = lastId(room);
    if (state.room !== room || messageId === 0) return;
    try {
      await api("PUT", `/v1/rooms/${room.id}/read`, { message_id: messageId });
    } catch (error) {
      // Not marked this time (offline, or the message was just deleted): the next read marks.
    }
  }, 300);
}

// -- wiring ------------------------------------------------------------------------------

function wire() {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn("login");
  });
  $("register-button").addEventListener("click", () => signIn("register"));
  $("logout-button").addEventListener("click", logout);
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search();
  });
  $("search-input").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(search, 250);
  });
  $("create-room-button").addEventListener("click", createRoom);
  $("older-button").addEventListener("click", loadOlder);
  $("scroller").addEventListener("scroll", () => {
    if ($("scroller").scrollTop === 0) loadOlder();
  });
  $("send-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sendMessage();
  });
  $("message-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      sendMessage();
    }
  });
  $("message-input").addEventListener("input", typed);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.room) markRead(state.room);
  });
  window.addEventListener("online", () => {
    const room = state.room;
    if (room && room.socket === null) {
      clearTimeout(room.reconnectTimer);
      connect(room);
    }
  });
}

wire();
state.session = sessionStorage.getItem(SESSION_KEY);
if (state.session) start();
else showLogin("");
